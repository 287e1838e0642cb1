"""`avbench resolve`: turn a spec into a pinned lock file.

Searches change every day, so a dataset is never rebuilt from a search: `resolve` runs each
`youtube-search` once (yt-dlp `ytsearchN:` with `extract_flat`, no video page is fetched), lists each
Hugging Face repository at a commit sha, expands the offline kinds, and writes one row per source. Later
stages read only the lock file, and a lock file can be shared so others rebuild the same set.

Lock file I/O is `lock.py`; everything said to yt-dlp is `ytdlp.py`.
"""

from __future__ import annotations

import datetime as _dt
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avbench.curate import ytdlp
from avbench.curate.ffmpeg import ensure_ffmpeg_on_path
from avbench.curate.lock import write_lock
from avbench.curate.sources import (
    SourceEntry,
    SourceError,
    expand_hf,
    expand_offline,
    merge_entries,
    short_hash,
    spec_base,
    youtube_url,
)
from avbench.curate.spec import DatasetSpec, HFSource, YouTubeSearchSource, load_spec
from avbench.errors import ResolveError

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
    """Run the search once. Twice `max_results` are requested because the duration bounds drop some.
    yt-dlp's errors go to `logger` (a quiet one by default); the caller reports the exception."""
    ensure_ffmpeg_on_path()
    n = max(1, 2 * src.max_results)
    info = ytdlp.extract(search_url(src, n), ytdlp.search_options(n, cookies=cookies, logger=logger), download=False)
    return rows_from_search(info, src)


# ---- resolving a whole spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveConfig:
    spec: str = field(metadata={"help": "Dataset spec: a path to a .toml or a name in manifests/ (e.g. concerts)."})
    out: Path | None = field(default=None, metadata={"help": "Lock file to write (.csv, or .parquet)."})  # None: do not write
    cookies: str | None = field(default=None, metadata={"help": "Netscape cookies file for yt-dlp."})


def resolve_entries(
    spec: DatasetSpec,
    *,
    cookies: str | None = None,
    search: Callable[[YouTubeSearchSource], list[SourceEntry]] | None = None,
) -> list[SourceEntry]:
    """All sources of `spec` as pinned entries, one per source_id: the first occurrence wins, except that
    the same file bytes listed twice keep every path."""
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
        except Exception as e:  # noqa: BLE001 - yt-dlp errors (network, extractor): one line each
            failures.append(f"{where}: {ytdlp.one_line(str(e)) or type(e).__name__}")
            continue
        for r in rows:
            found[r.source_id] = merge_entries(found[r.source_id], r) if r.source_id in found else r
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
