"""CLI commands of this area: `avbench scene-cut`, `resample`, `shard`, `build`.

Each command is a thin wrapper: its options come from one config dataclass (see commands/options.py),
it calls one library function and turns the summary into lines and an exit code (avbench/errors.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from avbench.commands.options import Config
from avbench.errors import EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT, DataError

_SPEC = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo).")


def _exit_code(failed: int, transient: int) -> int:
    """Transient failures first: rerunning the same command may still fix them (as for download)."""
    if transient:
        return EXIT_TRANSIENT
    return EXIT_FAILED if failed else EXIT_OK


def _report(summary) -> None:
    """Print the stage summary and one line per failed source; exit non-zero when any failed."""
    for source_id, reason in sorted(summary.failures.items()):
        typer.secho(f"failed {source_id}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(summary.line())
    raise typer.Exit(_exit_code(summary.failed, summary.transient))


def _load_spec(spec: str, root: Path):
    """The spec, after checking that ROOT holds downloads: without records/ it is a typo or a download
    that never ran, and every later stage would find nothing to do."""
    from avbench.curate.spec import load_spec

    spec_obj = load_spec(spec)
    if not (Path(root) / "records").is_dir():
        raise DataError(f"{root}: no download records (records/); run `avbench download {spec} --root {root}` "
                        "first, or check the --root path")
    return spec_obj


def scene_cut_cmd(
    spec: str = _SPEC,
    root: Path = typer.Option(..., "--root", help="Dataset root (records/ and sources/ from `avbench download`)."),
    cfg=Config("avbench.curate.scenes:SceneCutConfig"),
) -> None:
    """Detect hard cuts (PySceneDetect) and write ROOT/scenes/<source_id>.parquet clip spans; resumable.

    Exit code: 0 all ok, 1 some sources failed (see ROOT/failures/scene-cut/), 3 only transient failures.
    """
    from avbench.curate.scenes import scene_cut_sources

    _report(scene_cut_sources(_load_spec(spec, root), root, cfg))


def resample_cmd(
    spec: str = _SPEC,
    root: Path = typer.Option(..., "--root", help="Dataset root (after `avbench scene-cut`)."),
    cfg=Config("avbench.curate.resample:ResampleConfig"),
) -> None:
    """Cut every span into aligned clips: 10 fps video per spec size (H.264) + 16 kHz mono FLAC; resumable.

    Writes ROOT/clips/<source_id>/ with clips.json last. Exit code: 0 all ok, 1 some sources failed
    (see ROOT/failures/resample/), 3 only transient failures.
    """
    from avbench.curate.resample import resample_sources

    _report(resample_sources(_load_spec(spec, root), root, cfg))


def shard_cmd(
    spec: str = _SPEC,
    root: Path = typer.Option(..., "--root", help="Dataset root (after `avbench resample`)."),
    cfg=Config("avbench.curate.shard:ShardConfig", flags={"sizes": "--size"}),
    progress: bool = typer.Option(True, "--progress/--no-progress", metavar="", help="Show a progress bar."),
) -> None:
    """Write WebDataset tars ROOT/shards/<size>/<split>/*.tar plus index.json and stats.json.

    Merges every source's clips (run it once after all `--partition` jobs). Splits by a salted hash of
    the source id; byte-reproducible. Exit code: 0 ok, 1 some clips were unreadable (listed) or no
    shard was written.
    """
    from rich.progress import Progress

    from avbench.curate.shard import shard_dataset

    spec_obj = _load_spec(spec, root)
    if progress:
        with Progress() as bar:
            summary = shard_dataset(spec_obj, root, cfg, progress=bar)
    else:
        summary = shard_dataset(spec_obj, root, cfg)
    for line in summary.clip_errors:
        typer.secho(f"skipped clip: {line}", fg=typer.colors.RED, err=True)
    if summary.sources_missing_clips:
        typer.secho(f"{len(summary.sources_missing_clips)} ready source(s) have no clips yet (run `avbench resample`): "
                    + ", ".join(summary.sources_missing_clips[:5]), fg=typer.colors.YELLOW, err=True)
    samples = ", ".join(f"{k} {v}" for k, v in sorted(summary.samples.items()))
    typer.echo(f"shard: {summary.shards} shards ({samples}) → {summary.index_path}")
    if summary.clip_errors or not summary.shards:
        raise typer.Exit(EXIT_FAILED)


def build_cmd(
    cfg=Config("avbench.curate.build:BuildConfig", arguments=("spec",)),
    strict: bool = typer.Option(False, "--strict/--no-strict", metavar="", help="Exit 1 when any source failed "
                                "(default: list them, and exit 0 if something was built)."),
) -> None:
    """Build a dataset: resolve (if needed) → download → scene-cut → resample → shard. Resumable.

    Every stage skips sources whose completion marker exists, so rerunning after a crash or `kill -9`
    finishes the job with the same bytes. Failed sources are listed with their reason; the build goes on.
    Exit code: 0 ok, 1 nothing was built (every source failed, or no shard) or, with --strict, any failure,
    3 transient failures remain (rerun to retry them).
    """
    from avbench.curate.build import build_dataset

    summary = build_dataset(cfg)
    for stage, failures in summary.failures.items():
        for source_id, reason in failures.items():
            typer.secho(f"failed {stage} {source_id}: {reason}", fg=typer.colors.RED, err=True)
    for line in summary.lines():
        typer.echo(line)
    raise typer.Exit(summary.exit_code(strict))
