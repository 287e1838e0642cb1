"""CLI commands of this area: `avbench resolve`, `avbench download`, `avbench info`.

Each command is a thin wrapper: its options come from one config dataclass (see commands/options.py),
it calls one library function and prints the result. Library modules are imported inside the
functions so that `avbench --help` imports none of them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from avbench.commands.options import Config

_LOCK_SUFFIXES = (".csv", ".parquet")


def resolve_cmd(
    cfg=Config("avbench.curate.resolve:ResolveConfig", arguments=("spec",), required=("out",),
               flags={"out": ("--out", "-o")}),
) -> None:
    """Pin a spec's sources (run its searches once, list its Hugging Face files) into a lock file."""
    from avbench.curate.resolve import resolve

    rows = resolve(cfg)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    hours = sum(r.duration_s or 0.0 for r in rows) / 3600
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"wrote {cfg.out}: {len(rows)} sources ({detail}), {hours:.1f} h where durations are known")


def download_cmd(
    target: str = typer.Argument(..., help="A dataset spec (path or name, e.g. demo) or a lock file (.csv/.parquet)."),
    cfg=Config("avbench.curate.download:DownloadConfig", skip=("lock",),
               flags={"jobs": ("--jobs", "-j"), "format": ("--format", "-f"), "sleep_s": "--sleep",
                      "backoff_s": "--backoff", "min_duration_s": "--min-duration",
                      "socket_timeout_s": "--socket-timeout", "host_interval_s": "--host-interval",
                      "max_backoff_s": "--max-backoff"},
               help={"spec": "With a lock file as TARGET: the spec whose clip policy sets the minimum duration."}),
) -> None:
    """Fetch the sources into ROOT/sources/<sha256>.<ext> with one record each; resumable.

    Exit code: 0 all ok, 1 some sources failed permanently, 3 some failed transiently (rerun to retry).
    """
    from avbench.curate.download import download_sources, plan_download
    from avbench.curate.info import print_summary

    if Path(target).suffix in _LOCK_SUFFIXES:
        cfg = dataclasses.replace(cfg, lock=Path(target))
    else:
        cfg = dataclasses.replace(cfg, spec=target)
    if cfg.dry_run:
        typer.echo(plan_download(cfg).text())
        raise typer.Exit(0)
    summary = download_sources(cfg)
    print_summary(summary)
    raise typer.Exit(summary.exit_code)


def info_cmd(cfg=Config("avbench.curate.info:InfoConfig", arguments=("root",))) -> None:
    """Print a table of a dataset root's sources, durations and failures, and the later stages' state."""
    from avbench.curate.info import show_info

    show_info(cfg)
