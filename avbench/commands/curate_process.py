"""CLI commands of this area. Each command is a thin wrapper: parse options, build one config object, call one function."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _report(summary) -> None:
    """Print the stage summary and one line per failed source; exit 1 when any failed."""
    for source_id, reason in sorted(summary.failures.items()):
        typer.secho(f"failed {source_id}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(1)


def _load(spec: str, partition: str):
    from avbench.curate.partition import Partition
    from avbench.curate.spec import SpecError, load_spec

    try:
        return load_spec(spec), Partition.parse(partition)
    except (SpecError, ValueError, FileNotFoundError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def scene_cut_cmd(
    spec: str = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (records/ and sources/ from `avbench download`)."),
    partition: str = typer.Option("0/1", help="Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."),
    workers: int = typer.Option(0, min=0, help="Parallel worker processes (0 = one per core)."),
    detector: Optional[str] = typer.Option(None, help="content or adaptive (default: the spec's [scenes] detector)."),
    threshold: Optional[float] = typer.Option(None, help="Detector threshold (default: the spec's, else the detector's own)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Detect hard cuts (PySceneDetect) and write ROOT/scenes/<source_id>.parquet clip spans; resumable.

    Exit code: 0 all ok, 1 some sources failed (see ROOT/failures/scene-cut/).
    """
    from avbench.curate.scenes import SceneCutConfig, scene_cut_sources

    spec_obj, part = _load(spec, partition)
    cfg = SceneCutConfig(workers=workers, partition=part, detector=detector, threshold=threshold, progress=progress)
    try:
        summary = scene_cut_sources(spec_obj, root, cfg)
    except ValueError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    _report(summary)


def resample_cmd(
    spec: str = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (after `avbench scene-cut`)."),
    partition: str = typer.Option("0/1", help="Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."),
    workers: int = typer.Option(0, min=0, help="Parallel worker processes (0 = one per core), one encoder thread each."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Cut every span into aligned clips: 10 fps video per spec size (H.264) + 16 kHz mono FLAC; resumable.

    Writes ROOT/clips/<source_id>/ with clips.json last. Exit code: 0 all ok, 1 some sources failed
    (see ROOT/failures/resample/).
    """
    from avbench.curate.resample import ResampleConfig, resample_sources

    spec_obj, part = _load(spec, partition)
    _report(resample_sources(spec_obj, root, ResampleConfig(workers=workers, partition=part, progress=progress)))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("scene-cut")(scene_cut_cmd)
    app.command("resample")(resample_cmd)
