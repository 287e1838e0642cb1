"""`avbench download`: fetch every pinned source into a content-addressed cache, one record per source.

    ROOT/lock.csv                    the pinned sources this root was built from
    ROOT/sources/<sha256>.<ext>      the media, named by content (identical files are stored once)
    ROOT/records/<source_id>.json    what happened: status, error class, attempts, sha256, probe, licence
    ROOT/.tmp/<source_id>/           work in progress (yt-dlp `.part` files resume from here)

Nothing reaches `sources/` before it has been probed and hashed, and it gets there by a rename, so a
killed run never leaves a partial file under a final name. A rerun skips sources whose record says ok,
retries transient failures and leaves permanent ones alone (unless `retry_failed`). One failing source
never stops the run.

Failure classes: *permanent* means a rerun cannot help (removed/private/unavailable, 404, not media, no
audio, too short); *transient* means it may (403/429, timeouts, resets, truncated transfers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avbench.errors import CurateError

if TYPE_CHECKING:
    from avbench.curate.partition import Partition

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avbench.curate.probe import MediaRejected, probe_media
from avbench.curate.sources import SourceEntry
from avbench.io import atomic_write_json, sha256_file

# The smallest rendition of at least 360p that has audio (merged from separate streams when needed);
# sources offering nothing that tall fall back to the smallest with audio. "+res" sorts ascending, so
# "best" under this sort means "lowest resolution, then smallest file".
DEFAULT_FORMAT = "bv*[height>=360]+ba/b[height>=360]/bv*+ba/b"
FORMAT_SORT = ("+res", "+size", "+br")
DEFAULT_MIN_DURATION_S = 1.6  # one training window; used when no spec gives the clip policy

PERMANENT, TRANSIENT = "permanent", "transient"

# Lower-cased message fragments, checked after the HTTP status and exception type.
_TRANSIENT_FIRST = ("not a bot", "confirm you", "rate-limit", "too many requests", "try again later")
_PERMANENT = (
    "video unavailable",
    "private video",
    "has been removed",
    "is not available",
    "account associated",
    "copyright",
    "unsupported url",
    "did not get any data blocks",
    "no video formats",
    "requested format is not available",
    "members-only",
    "members only",
    "premieres in",
    "this live event",
    "http error 404",
    "http error 410",
)
_TRANSIENT = ("http error 403", "http error 429", "http error 5", "timed out", "timeout", "connection",
              "bytes read", "giving up after", "temporarily", "incomplete read", "reset by peer")


class FetchError(CurateError):
    def __init__(self, message: str, error_class: str):
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True)
class DownloadConfig:
    root: Path
    spec: str | None = None  # a spec path or name (manifests/<name>.toml)
    lock: Path | None = None  # a lock file; wins over resolving the spec
    jobs: int = 1
    retries: int = 3  # yt-dlp's HTTP / fragment / extractor retries within one attempt
    backoff_s: float = 1.0  # sleep before yt-dlp retry n is backoff_s * 2**n (capped at 60 s)
    sleep_s: float = 0.0  # pause before each network download (be polite; ~5-10 s for YouTube)
    rate_limit: str | None = None  # bytes/s per download, e.g. "2M"
    cookies: str | None = None  # Netscape cookies file for yt-dlp
    format: str = DEFAULT_FORMAT
    partition: str = "0/1"  # "i/N": only the i-th of N deterministic slices (SLURM arrays)
    min_duration_s: float | None = None  # None: the spec's skip_start_s + min_clip_s, else 1.6 s
    retry_failed: bool = False  # also retry sources that failed permanently
    socket_timeout_s: float = 30.0
    progress: bool = True  # show a rich progress bar


@dataclass
class DownloadSummary:
    root: Path
    records: list[dict] = field(default_factory=list)  # one per selected source, sorted by source_id
    skipped: int = 0  # already done (or permanently failed) before this run

    def count(self, status: str, error_class: str | None = None) -> int:
        return sum(
            1 for r in self.records if r["status"] == status and (error_class is None or r["error_class"] == error_class)
        )

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def failed_permanent(self) -> int:
        return self.count("failed", PERMANENT)

    @property
    def failed_transient(self) -> int:
        return self.count("failed", TRANSIENT)

    @property
    def exit_code(self) -> int:
        """0: all ok; 2: transient failures remain (rerun to retry them); 1: only permanent failures."""
        if self.failed_transient:
            return 2
        return 1 if self.failed_permanent else 0

    def as_dict(self) -> dict[str, int]:
        return {
            "total": len(self.records),
            "ok": self.ok,
            "failed_permanent": self.failed_permanent,
            "failed_transient": self.failed_transient,
            "skipped": self.skipped,
        }


# ---- error classes -----------------------------------------------------------------------------------


def one_line(text: str) -> str:
    """yt-dlp's error text as one line: no "ERROR: " prefix, no repeated "(caused by ...)" tail."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    line = line.removeprefix("ERROR: ")
    cut = line.find(" (caused by ")
    return line[:cut] if cut > 0 else line


def classify_error(exc: BaseException) -> tuple[str, str]:
    """(error_class, one-line message) for an exception raised while fetching a source."""
    if isinstance(exc, FetchError):
        return exc.error_class, str(exc)
    if isinstance(exc, MediaRejected):
        return exc.error_class, str(exc)
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import ContentTooShortError, DownloadError, UnsupportedError

    cause = exc
    if isinstance(exc, DownloadError) and exc.exc_info and exc.exc_info[1] is not None:
        cause = exc.exc_info[1]
    msg = one_line(str(exc)) or type(exc).__name__
    if isinstance(cause, HTTPError):
        code = cause.status
        if code in (400, 401, 404, 410, 451):
            return PERMANENT, msg
        return TRANSIENT, msg  # 403 (expired URL / IP block), 408, 429, 5xx
    if isinstance(cause, (TransportError, ContentTooShortError, TimeoutError, ConnectionError)):
        return TRANSIENT, msg
    if isinstance(cause, UnsupportedError):
        return PERMANENT, f"{msg} (not a media file or page yt-dlp understands)"
    text = msg.lower()
    if any(p in text for p in _TRANSIENT_FIRST):
        return TRANSIENT, msg
    if any(p in text for p in _PERMANENT):
        return PERMANENT, msg
    if any(p in text for p in _TRANSIENT):
        return TRANSIENT, msg
    return TRANSIENT, msg  # unknown: let a rerun try again; attempts are counted in the record


# ---- fetching one source -----------------------------------------------------------------------------


class _YtdlpLogger:
    """Collects yt-dlp's messages instead of letting them reach stderr (quiet=True does not stop errors)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def ytdlp_options(cfg: DownloadConfig, outdir: Path, stem: str) -> dict[str, Any]:
    from yt_dlp.utils import parse_bytes

    backoff = cfg.backoff_s
    opts: dict[str, Any] = {
        "outtmpl": str(outdir / f"{stem}.%(ext)s"),
        "format": cfg.format,
        "format_sort": list(FORMAT_SORT),
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "extractor_retries": cfg.retries,
        "retry_sleep_functions": {k: (lambda n: min(60.0, backoff * 2**n)) for k in ("http", "fragment", "extractor")},
        # The default (True) skips fragments that fail and reports success on a truncated file.
        "skip_unavailable_fragments": False,
        "continuedl": True,  # resume `.part` files left by a killed run
        "noplaylist": True,
        "socket_timeout": cfg.socket_timeout_s,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtdlpLogger(),
    }
    if cfg.sleep_s > 0:
        opts["sleep_interval"] = cfg.sleep_s
    if cfg.rate_limit:
        rate = parse_bytes(cfg.rate_limit)
        if rate is None:
            raise ValueError(f"--rate-limit {cfg.rate_limit!r}: expected bytes per second like 500K or 2M")
        opts["ratelimit"] = rate
    if cfg.cookies:
        if not Path(cfg.cookies).is_file():
            raise ValueError(f"--cookies {cfg.cookies}: file not found (export a Netscape cookies.txt)")
        opts["cookiefile"] = cfg.cookies
    return opts


def _fetch_ytdlp(entry: SourceEntry, cfg: DownloadConfig, work: Path) -> tuple[Path, dict]:
    import yt_dlp

    opts = ytdlp_options(cfg, work, entry.source_id)
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.sanitize_info(ydl.extract_info(entry.url, download=True))
    downloads = info.get("requested_downloads") or []
    path = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if path is None or not path.exists():
        raise FetchError(f"{entry.url}: yt-dlp reported success but wrote no file", TRANSIENT)
    meta = {
        "fetcher": f"yt-dlp {yt_dlp.version.__version__}",
        "extractor": info.get("extractor_key") or "",
        "format_id": info.get("format_id") or "",
        "format": info.get("format") or "",
        "license": info.get("license") or "",
        "title": info.get("title") or "",
        "channel": info.get("channel") or info.get("uploader") or "",
        "channel_id": info.get("channel_id") or "",
        "upload_date": info.get("upload_date") or "",
        "availability": info.get("availability") or "",
    }
    return path, meta


def _fetch_synthetic(entry: SourceEntry, work: Path) -> tuple[Path, dict]:
    from avbench.curate.synthetic import render_synthetic

    if entry.duration_s is None:
        raise FetchError(f"{entry.source_id}: synthetic row without duration_s in the lock file", PERMANENT)
    path = work / f"{entry.source_id}.mp4"
    render_synthetic(path, int(entry.id), float(entry.duration_s))
    return path, {"fetcher": "avbench.curate.synthetic"}


def _fetch_file(entry: SourceEntry, work: Path) -> tuple[Path, dict]:
    src = Path(entry.id)
    if not src.is_file():
        raise FetchError(f"{src}: file not found; fix the path in the spec's [[sources]] paths", PERMANENT)
    # Copy before probing and hashing: the original may change while we read it.
    path = work / f"{entry.source_id}{src.suffix.lower() or '.bin'}"
    shutil.copyfile(src, path)
    return path, {"fetcher": "copy"}


def _base_record(entry: SourceEntry) -> dict:
    return {
        "source_id": entry.source_id,
        "kind": entry.kind,
        "id": entry.id,
        "url": entry.url,
        "title": entry.title,
        "channel": entry.channel,
        "license": entry.license,
        "upload_date": entry.upload_date,
        "query": entry.query,
        "ranges": json.loads(entry.ranges) if entry.ranges else None,
        "status": "failed",
        "error_class": None,
        "error": None,
        "attempts": 0,
        "sha256": None,
        "path": None,
        "bytes": None,
        "duration_s": None,
        "probe": None,
    }


def record_path(root: Path, source_id: str) -> Path:
    return Path(root) / "records" / f"{source_id}.json"


def read_record(root: Path, source_id: str) -> dict | None:
    p = record_path(root, source_id)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None  # records are written atomically; an unreadable one is treated as absent


def is_done(root: Path, rec: dict | None, retry_failed: bool) -> bool:
    if rec is None:
        return False
    if rec.get("status") == "ok":
        return bool(rec.get("path")) and (Path(root) / rec["path"]).is_file()
    return rec.get("error_class") == PERMANENT and not retry_failed


def fetch_one(entry: SourceEntry, cfg: DownloadConfig, min_duration_s: float) -> dict:
    """Fetch, probe, hash and file one source; always returns (and writes) its record."""
    root = Path(cfg.root)
    prev = read_record(root, entry.source_id)
    rec = _base_record(entry)
    rec["attempts"] = int(prev.get("attempts", 0)) + 1 if prev else 1
    work = root / ".tmp" / entry.source_id
    work.mkdir(parents=True, exist_ok=True)
    keep_work = False
    path = None
    try:
        if entry.kind == "synthetic":
            path, meta = _fetch_synthetic(entry, work)
        elif entry.kind == "file":
            path, meta = _fetch_file(entry, work)
        else:
            path, meta = _fetch_ytdlp(entry, cfg, work)
        for k, v in meta.items():
            if v or k not in rec:
                rec[k] = v
        probe = probe_media(path, min_duration_s)
        digest = sha256_file(path)
        ext = path.suffix.lower() or ".bin"
        final = root / "sources" / f"{digest}{ext}"
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(path, final)  # same file system: atomic, and identical content may overwrite safely
        rec.update(
            status="ok",
            sha256=digest,
            path=f"sources/{digest}{ext}",
            bytes=final.stat().st_size,
            duration_s=probe.duration_s,
            probe=probe.to_dict(),
        )
    except Exception as e:  # one broken source must never stop the run
        cls, msg = classify_error(e)
        if entry.url and entry.url not in msg:
            msg = f"{entry.url}: {msg}"
        rec.update(status="failed", error_class=cls, error=msg)
        keep_work = cls == TRANSIENT  # a partial download resumes from its `.part` next time
        if isinstance(e, MediaRejected) and path is not None:
            # yt-dlp finished this file and would reuse it ("already downloaded"); the probe says it is
            # bad, so the next attempt must fetch it again
            path.unlink(missing_ok=True)
    atomic_write_json(record_path(root, entry.source_id), rec)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return rec


# ---- the stage ---------------------------------------------------------------------------------------


def load_entries(cfg: DownloadConfig) -> tuple[list[SourceEntry], Any]:
    """The pinned sources for this root (and the spec, if one was given); writes ROOT/lock.csv.

    Order of precedence: an explicit lock file; ROOT/lock.csv when the spec needs a lookup (searches,
    hub listings: never re-run them once pinned); otherwise the spec expanded offline.
    """
    from avbench.curate.partition import Partition
    from avbench.curate.resolve import lock_bytes, read_lock, resolve_entries
    from avbench.curate.sources import needs_lookup
    from avbench.curate.spec import load_spec
    from avbench.io import atomic_write_bytes

    root = Path(cfg.root)
    root_lock = root / "lock.csv"
    spec = load_spec(cfg.spec) if cfg.spec else None
    if cfg.lock is not None:
        entries = read_lock(cfg.lock)
    elif spec is None:
        raise ValueError("download needs a spec or a lock file")
    elif needs_lookup(spec) and root_lock.exists():
        entries = read_lock(root_lock)
    else:
        if needs_lookup(spec) and Partition.parse(cfg.partition).count > 1:
            raise ValueError(
                f"{spec.path}: searches must be pinned once before a partitioned run; run "
                f"`avbench resolve {spec.path} --out {root_lock}` first"
            )
        entries = resolve_entries(spec)
    data = lock_bytes(entries)
    if not root_lock.exists() or root_lock.read_bytes() != data:
        atomic_write_bytes(root_lock, data)
    return entries, spec


def download_sources(
    cfg: DownloadConfig,
    *,
    entries: list[SourceEntry] | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> DownloadSummary:
    """Fetch this partition's sources into `cfg.root`; resumable; returns the per-source records.

    `entries` skips the spec/lock lookup (the caller already has them); `on_record` is called with each
    finished record (from worker threads, one at a time).
    """
    from avbench.curate.ffmpeg import ensure_ffmpeg_on_path
    from avbench.curate.partition import Partition

    root = Path(cfg.root)
    root.mkdir(parents=True, exist_ok=True)
    spec = None
    if entries is None:
        entries, spec = load_entries(cfg)
    elif cfg.spec:
        from avbench.curate.spec import load_spec

        spec = load_spec(cfg.spec)
    if cfg.min_duration_s is not None:
        min_dur = cfg.min_duration_s
    elif spec is not None:
        min_dur = spec.clip.skip_start_s + spec.clip.min_clip_s
    else:
        min_dur = DEFAULT_MIN_DURATION_S
    part = Partition.parse(cfg.partition)
    mine = part.select(entries, key=lambda e: e.source_id)
    if any(e.kind in ("youtube", "url", "hf") for e in mine):
        ensure_ffmpeg_on_path()  # yt-dlp merges separate audio/video streams with it
        ytdlp_options(cfg, root, "check")  # bad --rate-limit / --cookies fail before any download

    summary = DownloadSummary(root=root)
    todo = []
    for e in mine:
        rec = read_record(root, e.source_id)
        if is_done(root, rec, cfg.retry_failed):
            summary.records.append(rec)
            summary.skipped += 1
        else:
            todo.append(e)

    lock = threading.Lock()

    def finished(rec: dict) -> None:
        with lock:
            summary.records.append(rec)
            if on_record is not None:
                on_record(rec)

    progress = _progress(cfg.progress)
    with progress:
        task = progress.add_task("download", total=len(mine), completed=summary.skipped)

        def advance(rec: dict) -> None:
            finished(rec)
            progress.update(task, advance=1, description=f"{rec['source_id']} {rec['status']}")

        if cfg.jobs <= 1:
            for e in todo:
                advance(fetch_one(e, cfg, min_dur))
        else:
            with ThreadPoolExecutor(max_workers=cfg.jobs, thread_name_prefix="download") as pool:
                futures = [pool.submit(fetch_one, e, cfg, min_dur) for e in todo]
                for f in as_completed(futures):
                    advance(f.result())
    summary.records.sort(key=lambda r: r["source_id"])
    tmp = root / ".tmp"
    if tmp.is_dir() and not any(tmp.iterdir()):
        tmp.rmdir()
    return summary


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(show: bool):
    if not show:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def ready_sources(root: str | Path, partition: "Partition | None" = None) -> list[dict]:
    """Records of the sources that are ok and present in the cache, sorted by source_id.

    When ROOT/lock.csv exists only its sources count: records of sources dropped from the spec since
    an earlier run stay on disk (nothing is deleted) but are not part of the dataset any more.
    `partition` slices the lock file's ids (as `download` does), *then* keeps the ready ones, so every
    stage of one SLURM array task works on the same sources whatever the others have finished.
    """
    root = Path(root)
    wanted: set[str] | None = None
    if (root / "lock.csv").exists():
        from avbench.curate.resolve import read_lock

        wanted = {e.source_id for e in read_lock(root / "lock.csv")}
    if partition is not None and partition.count > 1:
        universe = wanted if wanted is not None else {p.stem for p in (root / "records").glob("[!.]*.json")}
        wanted = set(partition.select(universe))
    out = []
    # "[!.]": pathlib's "*" matches dot files, and a kill -9 can leave atomic_path's .tmp-* copy behind
    for p in sorted((root / "records").glob("[!.]*.json")):
        if wanted is not None and p.stem not in wanted:
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        if rec.get("status") == "ok" and rec.get("path") and (root / rec["path"]).is_file():
            out.append(rec)
    return sorted(out, key=lambda r: r["source_id"])
