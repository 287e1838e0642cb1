"""Lock files: the pinned sources of a dataset, one row each (`avbench resolve` writes them, every later
stage reads them).

CSV (fixed column order, rows sorted by source_id, so the same sources give the same bytes) or parquet
when the file name ends in `.parquet`. pyarrow is imported only for parquet files: it takes ~0.16 s to
import, longer than the rest of the CLI, and most lock files are CSV.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from avbench.curate.sources import LOCK_COLUMNS, SourceEntry
from avbench.errors import LockError
from avbench.io import atomic_path, atomic_write_bytes

LOCK_KINDS = ("youtube", "url", "hf", "file", "synthetic")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def lock_bytes(rows: list[SourceEntry]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOCK_COLUMNS)
    for r in sorted(rows, key=lambda r: r.source_id):
        d = r.to_row()
        w.writerow([_cell(d[c]) for c in LOCK_COLUMNS])
    return buf.getvalue().encode("utf-8")


def write_lock(path: str | Path, rows: list[SourceEntry]) -> Path:
    """Write a lock file atomically: CSV, or parquet for a `.parquet` name."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        ordered = sorted(rows, key=lambda r: r.source_id)
        cols = {c: [r.to_row()[c] for r in ordered] for c in LOCK_COLUMNS}
        schema = pa.schema([(c, pa.float64() if c == "duration_s" else pa.string()) for c in LOCK_COLUMNS])
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(cols, schema=schema), tmp)
    else:
        atomic_write_bytes(path, lock_bytes(rows))
    return path


def _row_to_entry(d: dict, path: Path, lineno: int) -> SourceEntry:
    where = f"{path}: row {lineno}"
    kind = (d.get("kind") or "").strip()
    if kind not in LOCK_KINDS:
        raise LockError(f"{where}: column 'kind' is {kind!r}, expected one of {', '.join(LOCK_KINDS)}")
    sid = (d.get("source_id") or "").strip()
    if not sid or any(ch in sid for ch in "./\\ "):
        raise LockError(f"{where}: column 'source_id' {sid!r} is empty or has dots, slashes or spaces")
    dur = d.get("duration_s")
    if dur is None or dur == "" or (isinstance(dur, float) and dur != dur):
        duration = None
    else:
        try:
            duration = float(dur)
        except (TypeError, ValueError):
            raise LockError(f"{where}: column 'duration_s' must be a number, got {dur!r}") from None
    vals = {c: ("" if d.get(c) is None else str(d.get(c))) for c in LOCK_COLUMNS if c != "duration_s"}
    vals["source_id"], vals["kind"] = sid, kind
    if kind in ("youtube", "url", "hf") and not vals["url"]:
        raise LockError(f"{where}: {kind} row {sid!r} has an empty 'url'")
    if vals["ranges"]:
        try:
            json.loads(vals["ranges"])
        except json.JSONDecodeError:
            raise LockError(f"{where}: column 'ranges' must be JSON like [[10, 40]], got {vals['ranges']!r}") from None
    if kind == "file":
        _check_file_id(vals["id"], where)
    return SourceEntry(duration_s=duration, **vals)


def _check_file_id(ident: str, where: str) -> None:
    """A file row's 'id' is a path, or a JSON list of paths (the same bytes found under several)."""
    if not ident:
        raise LockError(f"{where}: file row has an empty 'id' (the file's path)")
    if ident.startswith("["):
        try:
            paths = json.loads(ident)
        except json.JSONDecodeError:
            paths = None
        if not (isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths)):
            raise LockError(f"{where}: column 'id' of a file row must be a path or a JSON list of paths, got {ident!r}")


def read_lock(path: str | Path) -> list[SourceEntry]:
    """Read and validate a lock file (CSV or parquet); LockError names the file, row and column."""
    path = Path(path)
    if not path.exists():
        raise LockError(f"{path}: lock file not found; create it with `avbench resolve SPEC --out {path}`")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as e:
            raise LockError(f"{path}: not a readable parquet lock file ({e})") from None
        header = list(records[0]) if records else list(LOCK_COLUMNS)
        start = 1
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise LockError(f"{path}: not a UTF-8 CSV lock file") from None
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        records = list(reader)
        start = 2  # line numbers as a text editor shows them (the header is line 1)
    missing = [c for c in LOCK_COLUMNS if c not in header]
    if missing:
        raise LockError(f"{path}: missing column {missing[0]!r}; regenerate it with `avbench resolve`")
    entries = [_row_to_entry(d, path, start + i) for i, d in enumerate(records)]
    seen: set[str] = set()
    for e in entries:
        if e.source_id in seen:
            raise LockError(f"{path}: source_id {e.source_id!r} appears twice")
        seen.add(e.source_id)
    return sorted(entries, key=lambda e: e.source_id)
