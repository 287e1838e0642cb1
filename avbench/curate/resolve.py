"""`avbench resolve`: turn a spec into a pinned lock file.

Searches change every day, so a dataset is never rebuilt from a search: `resolve` runs each
`youtube-search` once (yt-dlp `ytsearchN:` with `extract_flat`, no video page is fetched), lists each
Hugging Face repository at a commit sha, expands the offline kinds, and writes one row per source. Later
stages read only the lock file, and a lock file can be shared so others rebuild the same set.

Lock files are CSV (fixed column order, rows sorted by source_id, so the same sources give the same
bytes) or parquet when the file name ends in `.parquet`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from avbench.curate.sources import (
    LOCK_COLUMNS,
    SourceEntry,
    SourceError,
    expand_hf,
    expand_offline,
    short_hash,
    spec_base,
    youtube_url,
)
from avbench.curate.spec import DatasetSpec, HFSource, YouTubeSearchSource, load_spec
from avbench.errors import LockError, ResolveError

LOCK_KINDS = ("youtube", "url", "hf", "file", "synthetic")
# YouTube's own "Creative Commons" search filter (the `sp` parameter of /results).
_CC_FILTER = "EgIwAQ=="




# ---- YouTube search ----------------------------------------------------------------------------------


def search_url(src: YouTubeSearchSource, n: int) -> str:
    if src.creative_commons_only:
        q = urllib.parse.urlencode({"search_query": src.query, "sp": _CC_FILTER})
        return f"https://www.youtube.com/results?{q}"
    return f"ytsearch{n}:{src.query}"


def _upload_date(entry: dict) -> str:
    if entry.get("upload_date"):
        return str(entry["upload_date"])
    ts = entry.get("timestamp") or entry.get("release_timestamp")
    if ts:
        return _dt.datetime.fromtimestamp(int(ts), _dt.timezone.utc).strftime("%Y%m%d")
    return ""


def rows_from_search(info: dict, src: YouTubeSearchSource) -> list[SourceEntry]:
    """Lock rows from a flat playlist info dict (yt-dlp `extract_flat`), in search order.

    Keeps at most `max_results` entries whose duration is known and within the bounds and that are not
    live; YouTube results become `youtube` rows, anything else (e.g. a feed of direct links) `url` rows.
    """
    rows: list[SourceEntry] = []
    for e in info.get("entries") or []:
        if len(rows) >= src.max_results:
            break
        if not e or e.get("live_status") in ("is_live", "is_upcoming", "post_live"):
            continue
        dur = e.get("duration")
        if dur is None or not (src.min_duration_s <= float(dur) <= src.max_duration_s):
            continue
        lic = e.get("license") or ("creative-commons (search filter)" if src.creative_commons_only else "")
        common = dict(
            title=e.get("title") or "",
            channel=e.get("channel") or e.get("uploader") or "",
            duration_s=float(dur),
            license=lic,
            upload_date=_upload_date(e),
            query=src.query,
        )
        is_youtube = (e.get("ie_key") or e.get("extractor_key") or "").startswith("Youtube")
        if is_youtube and e.get("id"):
            rows.append(SourceEntry(source_id=e["id"], kind="youtube", id=e["id"], url=youtube_url(e["id"]), **common))
        elif e.get("url"):
            url = e["url"]
            rows.append(SourceEntry(source_id=f"url-{short_hash(url)}", kind="url", id=url, url=url, **common))
    return rows


def search_youtube(src: YouTubeSearchSource, *, cookies: str | None = None, logger: Any = None) -> list[SourceEntry]:
    """Run the search once. Twice `max_results` are requested because the duration bounds drop some."""
    import yt_dlp

    from avbench.curate.ffmpeg import ensure_ffmpeg_on_path

    ensure_ffmpeg_on_path()
    n = max(1, 2 * src.max_results)
    opts: dict[str, Any] = {
        "extract_flat": "in_playlist",
        "playlistend": n,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
    }
    if cookies:
        opts["cookiefile"] = cookies
    if logger is None:
        from avbench.curate.download import _YtdlpLogger

        logger = _YtdlpLogger()  # quiet=True alone still prints errors; they are reported by the caller
    opts["logger"] = logger
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(search_url(src, n), download=False)
    return rows_from_search(ydl.sanitize_info(info) or {}, src)


# ---- resolving a whole spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveConfig:
    spec: str  # a path or a name under manifests/
    out: Path | None = None  # lock file to write (.csv or .parquet); None = do not write
    cookies: str | None = None


def resolve_entries(
    spec: DatasetSpec,
    *,
    cookies: str | None = None,
    search: Callable[[YouTubeSearchSource], list[SourceEntry]] | None = None,
) -> list[SourceEntry]:
    """All sources of `spec` as pinned entries, deduplicated by source_id (first occurrence wins)."""
    base = spec_base(spec)
    label = str(spec.path) if spec.path else spec.name
    failures: list[str] = []
    found: dict[str, SourceEntry] = {}
    for i, src in enumerate(spec.sources):
        where = f"{label}: [[sources]] #{i + 1} ({src.kind})"
        try:
            if isinstance(src, YouTubeSearchSource):
                rows = (search or (lambda s: search_youtube(s, cookies=cookies)))(src)
            elif isinstance(src, HFSource):
                rows = expand_hf(src, where)
            else:
                rows = expand_offline(src, base, where)
        except SourceError as e:
            failures.append(str(e) if str(e).startswith(label) else f"{where}: {e}")
            continue
        except Exception as e:  # yt-dlp errors (network, extractor): one line each
            from avbench.curate.download import one_line

            failures.append(f"{where}: {one_line(str(e)) or type(e).__name__}")
            continue
        for r in rows:
            found.setdefault(r.source_id, r)
    if failures:
        # A partial lock file would silently pin a smaller dataset; fail and say which sources broke.
        raise ResolveError(f"{len(failures)} source(s) could not be resolved:\n" + "\n".join(failures))
    return sorted(found.values(), key=lambda r: r.source_id)


def resolve(cfg: ResolveConfig) -> list[SourceEntry]:
    spec = load_spec(cfg.spec)
    rows = resolve_entries(spec, cookies=cfg.cookies)
    if cfg.out is not None:
        write_lock(cfg.out, rows)
    return rows


# ---- lock file I/O -----------------------------------------------------------------------------------


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
    from avbench.io import atomic_path, atomic_write_bytes

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
    return SourceEntry(duration_s=duration, **vals)


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
