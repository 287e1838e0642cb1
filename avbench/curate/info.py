"""`avbench info DIR`: what a dataset root holds — sources, durations, failures, later stages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from avbench.curate.lock import read_lock
from avbench.curate.records import all_records
from avbench.errors import NotADatasetRoot

# What makes a folder a dataset root: any stage's output (download writes the first two).
_ROOT_MARKERS = ("lock.csv", "records", "shards/index.json")


@dataclass
class RootInfo:
    root: Path
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per source (lock ∪ records)
    stages: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str, error_class: str | None = None) -> int:
        return sum(1 for r in self.rows if r["status"] == status and (error_class is None or r["error_class"] == error_class))

    @property
    def hours_ok(self) -> float:
        return sum(r["duration_s"] or 0.0 for r in self.rows if r["status"] == "ok") / 3600.0


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def root_info(root: str | Path) -> RootInfo:
    """Collect the sources of a root: records, plus lock rows not fetched yet ("pending")."""
    root = Path(root)
    if not root.is_dir():
        raise NotADatasetRoot(f"{root}: no such dataset root; create one with `avbench download SPEC --root {root}`")
    if not any((root / m).exists() for m in _ROOT_MARKERS):
        raise NotADatasetRoot(f"{root}: not a dataset root (no lock.csv, records/ or shards/index.json); pass the "
                              f"--root given to `avbench download`, or create one with `avbench download SPEC --root {root}`")
    by_id: dict[str, dict[str, Any]] = {}
    if (root / "lock.csv").exists():
        for e in read_lock(root / "lock.csv"):
            by_id[e.source_id] = {
                "source_id": e.source_id, "kind": e.kind, "status": "pending", "error_class": None,
                "duration_s": e.duration_s, "bytes": None, "title": e.title, "error": None, "attempts": 0,
            }
    for rec in all_records(root):
        by_id[rec.source_id] = {k: rec.get(k) for k in
                                ("source_id", "kind", "status", "error_class", "duration_s", "bytes", "title", "error", "attempts")}
    info = RootInfo(root=root, rows=[by_id[k] for k in sorted(by_id)])

    scenes = list((root / "scenes").glob("[!.]*.parquet"))
    clip_dirs = [d for d in (root / "clips").glob("*") if d.is_dir()]
    clips_done = [d for d in clip_dirs if (d / "clips.json").exists()]
    n_clips = 0
    for d in clips_done:
        meta = _json(d / "clips.json")
        if isinstance(meta, list):
            n_clips += len(meta)
        elif isinstance(meta, dict):
            n_clips += len(meta.get("clips", meta))
    info.stages = {
        "scenes": len(scenes),
        "clip_sources_done": len(clips_done),
        "clips": n_clips,
        "shards_index": (root / "shards" / "index.json").exists(),
        "shard_stats": _json(root / "shards" / "stats.json"),
    }
    return info


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    return f"{int(s // 3600)}:{int(s % 3600 // 60):02d}:{s % 60:04.1f}" if s >= 3600 else f"{int(s // 60)}:{s % 60:04.1f}"


def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@dataclass(frozen=True)
class InfoConfig:
    root: Path = field(metadata={"help": "Dataset root directory."})
    max_rows: int = field(default=200, metadata={"help": "Show at most this many sources."})


def show_info(cfg: InfoConfig, console=None) -> RootInfo:
    """`avbench info`: print the table of `cfg.root`."""
    return print_info(cfg.root, console=console, max_rows=cfg.max_rows)


def print_info(root: str | Path, console=None, max_rows: int = 200) -> RootInfo:
    """Print the sources table and the totals; return the collected RootInfo."""
    console = console or Console()
    info = root_info(root)
    table = Table(title=f"sources in {info.root}", show_lines=False)
    for col, just in (("source", "left"), ("kind", "left"), ("status", "left"), ("class", "left"),
                      ("duration", "right"), ("size", "right"), ("tries", "right"), ("detail", "left")):
        last = col == "detail"
        table.add_column(col, justify=just, overflow="fold" if last else "ellipsis", no_wrap=not last, ratio=1 if last else None)
    style = {"ok": "green", "failed": "red", "pending": "yellow"}
    shown = info.rows if len(info.rows) <= max_rows else info.rows[:max_rows]
    for r in shown:
        text = r["error"] if r["status"] == "failed" else (r["title"] or "")
        table.add_row(
            r["source_id"], r["kind"] or "", f"[{style.get(r['status'], '')}]{r['status']}[/]",
            r["error_class"] or "", _fmt_duration(r["duration_s"]) if r["status"] == "ok" else "-",
            _fmt_bytes(r["bytes"]), str(r["attempts"] or 0), (text or "")[:160],
        )
    console.print(table)
    if len(info.rows) > max_rows:
        console.print(f"... {len(info.rows) - max_rows} more sources not shown")
    console.print(
        f"{len(info.rows)} sources: {info.count('ok')} ok ({info.hours_ok:.2f} h), "
        f"{info.count('failed', 'permanent')} failed permanently, {info.count('failed', 'transient')} failed "
        f"transiently (rerun `avbench download` to retry), {info.count('pending')} pending"
    )
    st = info.stages
    console.print(
        f"later stages: {st['scenes']} scene lists, {st['clip_sources_done']} sources clipped "
        f"({st['clips']} clips), shards {'present' if st['shards_index'] else 'absent'}"
    )
    return info


def print_summary(summary, console=None, max_failures: int = 50) -> None:
    """The end-of-download table: counts per status and failure class, then the failures themselves."""
    console = console or Console()
    counts = summary.as_dict()
    table = Table(title=f"download summary ({summary.root})")
    table.add_column("outcome")
    table.add_column("sources", justify="right")
    table.add_row("[green]ok[/]", str(counts["ok"]))
    table.add_row("[red]failed (permanent)[/]", str(counts["failed_permanent"]))
    table.add_row("[yellow]failed (transient)[/]", str(counts["failed_transient"]))
    table.add_row("done before this run", str(counts["skipped"]))
    table.add_row("total", str(counts["total"]))
    console.print(table)
    failed = [r for r in summary.records if r["status"] == "failed"]
    for r in failed[:max_failures]:
        console.print(f"  {r['source_id']} [{r['error_class']}] {r['error']}", markup=False, highlight=False, soft_wrap=True)
    if len(failed) > max_failures:
        console.print(f"  ... {len(failed) - max_failures} more; see `avbench info {summary.root}`")
