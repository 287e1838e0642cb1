"""CLI commands of this area: `avbench resolve`, `avbench download`, `avbench info`.

Each command is a thin wrapper: parse options, build one config object, call one library function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_LOCK_SUFFIXES = (".csv", ".parquet")


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def resolve_cmd(
    spec: str = typer.Argument(..., help="Dataset spec: a path to a .toml or a name in manifests/ (e.g. concerts)."),
    out: Path = typer.Option(..., "--out", "-o", help="Lock file to write (.csv, or .parquet)."),
    cookies: Optional[str] = typer.Option(None, help="Netscape cookies file for yt-dlp."),
) -> None:
    """Pin a spec's sources (run its searches once, list its Hugging Face files) into a lock file."""
    from avbench.curate.resolve import ResolveConfig, ResolveError, resolve
    from avbench.curate.sources import SourceError
    from avbench.curate.spec import SpecError

    try:
        rows = resolve(ResolveConfig(spec=spec, out=out, cookies=cookies))
    except (SpecError, SourceError, ResolveError, FileNotFoundError) as e:
        _fail(str(e))
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    hours = sum(r.duration_s or 0.0 for r in rows) / 3600
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"wrote {out}: {len(rows)} sources ({detail}), {hours:.1f} h where durations are known")


def download_cmd(
    target: str = typer.Argument(..., help="A dataset spec (path or name, e.g. demo) or a lock file (.csv/.parquet)."),
    root: Path = typer.Option(..., "--root", help="Dataset root directory (sources/, records/, lock.csv)."),
    spec: Optional[str] = typer.Option(None, help="With a lock file as TARGET: the spec whose clip policy sets the minimum duration."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Concurrent downloads."),
    retries: int = typer.Option(3, min=0, help="yt-dlp retries per request / fragment within one attempt."),
    sleep: float = typer.Option(0.0, min=0.0, help="Seconds to wait before each network download (5-10 for YouTube)."),
    rate_limit: Optional[str] = typer.Option(None, help="Bandwidth cap per download, e.g. 2M (bytes/s)."),
    cookies: Optional[str] = typer.Option(None, help="Netscape cookies file for yt-dlp."),
    format: str = typer.Option(
        "bv*[height>=360]+ba/b[height>=360]/bv*+ba/b", "--format", "-f",
        help="yt-dlp format selector; the default picks the smallest rendition >= 360p with audio.",
    ),
    partition: str = typer.Option("0/1", help="Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."),
    min_duration: Optional[float] = typer.Option(None, help="Reject shorter sources (default: spec skip_start_s + min_clip_s)."),
    retry_failed: bool = typer.Option(False, help="Also retry sources that failed permanently."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Fetch the sources into ROOT/sources/<sha256>.<ext> with one record each; resumable.

    Exit code: 0 all ok, 1 some sources failed permanently, 2 some failed transiently (rerun to retry).
    """
    from avbench.curate.download import DownloadConfig, download_sources
    from avbench.curate.info import print_summary
    from avbench.curate.resolve import LockError, ResolveError
    from avbench.curate.sources import SourceError
    from avbench.curate.spec import SpecError

    is_lock = Path(target).suffix in _LOCK_SUFFIXES
    cfg = DownloadConfig(
        root=root,
        spec=spec if is_lock else target,
        lock=Path(target) if is_lock else None,
        jobs=jobs,
        retries=retries,
        sleep_s=sleep,
        rate_limit=rate_limit,
        cookies=cookies,
        format=format,
        partition=partition,
        min_duration_s=min_duration,
        retry_failed=retry_failed,
        progress=progress,
    )
    try:
        summary = download_sources(cfg)
    except (SpecError, SourceError, LockError, ResolveError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    print_summary(summary)
    raise typer.Exit(summary.exit_code)


def info_cmd(
    root: Path = typer.Argument(..., help="Dataset root directory."),
    max_rows: int = typer.Option(200, help="Show at most this many sources."),
) -> None:
    """Print a table of a dataset root's sources, durations and failures, and the later stages' state."""
    from avbench.curate.info import InfoConfig, show_info
    from avbench.curate.resolve import LockError

    try:
        show_info(InfoConfig(root=root, max_rows=max_rows))
    except (FileNotFoundError, LockError) as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("resolve")(resolve_cmd)
    app.command("download")(download_cmd)
    app.command("info")(info_cmd)
