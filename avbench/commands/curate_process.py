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


def _require_downloads(root: Path, spec: str) -> None:
    """Later stages read ROOT/records/: without it the root is a typo or a download that never ran."""
    if not (Path(root) / "records").is_dir():
        typer.secho(f"error: {root}: no download records (records/); run `avbench download {spec} --root {root}` "
                    "first, or check the --root path", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)


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
    _require_downloads(root, spec)
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
    _require_downloads(root, spec)
    _report(resample_sources(spec_obj, root, ResampleConfig(workers=workers, partition=part, progress=progress)))


def shard_cmd(
    spec: str = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (after `avbench resample`)."),
    samples_per_shard: int = typer.Option(0, min=0, help="Samples per tar (0 = the spec's; if 0 there too, ~1 GB shards)."),
    size: Optional[list[int]] = typer.Option(None, "--size", help="Frame size(s) to shard (default: all of the spec's)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Write WebDataset tars ROOT/shards/<size>/<split>/*.tar plus index.json and stats.json.

    Merges every source's clips (run it once after all `--partition` jobs). Splits by a salted hash of
    the source id; byte-reproducible. Exit code: 0 ok, 1 some clips were unreadable (listed).
    """
    from avbench.curate.shard import ShardConfig, shard_dataset

    spec_obj, _ = _load(spec, "0/1")
    _require_downloads(root, spec)
    cfg = ShardConfig(sizes=tuple(size) if size else None, samples_per_shard=samples_per_shard)
    with _shard_progress(progress) as bar:
        summary = shard_dataset(spec_obj, root, cfg, progress=bar)
    for line in summary.clip_errors:
        typer.secho(f"skipped clip: {line}", fg=typer.colors.RED, err=True)
    if summary.sources_missing_clips:
        typer.secho(f"{len(summary.sources_missing_clips)} ready source(s) have no clips yet (run `avbench resample`): "
                    + ", ".join(summary.sources_missing_clips[:5]), fg=typer.colors.YELLOW, err=True)
    samples = ", ".join(f"{k} {v}" for k, v in sorted(summary.samples.items()))
    typer.echo(f"shard: {summary.shards} shards ({samples}) → {summary.index_path}")
    if summary.clip_errors:
        raise typer.Exit(1)


class _shard_progress:
    def __init__(self, show: bool):
        self.bar = None
        if show:
            from rich.progress import Progress

            self.bar = Progress()

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def build_cmd(
    spec: str = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (default: data/<spec name>)."),
    lock: Optional[Path] = typer.Option(None, "--lock", help="A shared lock file (from `avbench resolve`) instead of searching."),
    partition: str = typer.Option("0/1", help="Build only slice I of N (0-based) and skip sharding; a final unpartitioned run merges."),
    workers: int = typer.Option(0, min=0, help="Processes for scene-cut and resample (0 = one per core)."),
    jobs: int = typer.Option(1, min=1, help="Concurrent downloads."),
    strict: bool = typer.Option(False, help="Exit 1 when any source failed (default: report and exit 0)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Build a dataset: resolve (if needed) → download → scene-cut → resample → shard. Resumable.

    Every stage skips sources whose completion marker exists, so rerunning after a crash or `kill -9`
    finishes the job with the same bytes. Failed sources are listed with their reason; the build goes on.
    """
    from avbench.curate.build import BuildConfig, build_dataset
    from avbench.curate.resolve import ResolveError

    _load(spec, partition)  # validate early: one clear line instead of a traceback
    cfg = BuildConfig(spec=spec, root=root, lock=lock, partition=partition, workers=workers, jobs=jobs,
                      progress=progress)
    try:
        summary = build_dataset(cfg)
    except (ValueError, FileNotFoundError, ResolveError) as e:  # bad spec/lock, or a search that cannot run
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    for stage, failures in summary.failures.items():
        for source_id, reason in failures.items():
            typer.secho(f"failed {stage} {source_id}: {reason}", fg=typer.colors.RED, err=True)
    for line in summary.lines():
        typer.echo(line)
    if strict and summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("scene-cut")(scene_cut_cmd)
    app.command("resample")(resample_cmd)
    app.command("shard")(shard_cmd)
    app.command("build")(build_cmd)
