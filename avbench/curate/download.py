"""`avbench download`: fetch every pinned source into a content-addressed cache, one record per source.

    ROOT/lock.csv                    the pinned sources this root was built from
    ROOT/sources/<sha256>.<ext>      the media, named by content (identical files are stored once)
    ROOT/records/<source_id>.json    what happened: status, error class, attempts, sha256, probe, licence
    ROOT/failures/download/<id>.json the failures, as every stage records them (run_stage)
    ROOT/.tmp/<source_id>/           work in progress (yt-dlp `.part` files resume from here)

The download is a `Stage` (threads: it waits on the network): one job per source, done when its record
says ok (and the file is there) or says it failed permanently. Nothing reaches `sources/` before it
has been probed and hashed, and it gets there by a rename, so a killed run never leaves a partial file
under a final name. A rerun retries transient failures and leaves permanent ones alone (unless
`retry_failed`). One failing source never stops the run.

yt-dlp glue (options, error classes) is `ytdlp.py`, huggingface_hub glue `hfhub.py`, per-host limits
and back-off `throttle.py`, the record schema `records.py`, lock I/O `lock.py`. The module is a little
over 400 lines because the config, the per-kind fetchers, the stage and the dry run read best together.
A local file or a synthetic render reads the same every time, so a probe that rejects one is permanent
even where a download that looks cut short would be transient.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from avbench.curate import hfhub, ytdlp
from avbench.curate.ffmpeg import ensure_ffmpeg_on_path
from avbench.curate.lock import lock_bytes, read_lock
from avbench.curate.partition import Partition
from avbench.curate.probe import MediaRejected, probe_media
from avbench.curate.records import FAILED, OK, SourceRecord, record_path
from avbench.curate.resolve import resolve_entries
from avbench.curate.sources import SourceEntry, file_paths, needs_lookup
from avbench.curate.spec import DatasetSpec, load_spec
from avbench.curate.stage import Job, run_stage
from avbench.curate.synthetic import render_synthetic
from avbench.curate.throttle import Backoff, host_limiter, retry_fetch, split_bandwidth
from avbench.errors import EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT, PERMANENT, TRANSIENT, ConfigError, SourceFailure
from avbench.io import atomic_write_bytes, sha256_file

DEFAULT_FORMAT = ytdlp.DEFAULT_FORMAT
DEFAULT_MIN_DURATION_S = 1.6  # one training window; used when no spec gives the clip policy
LOCAL_KINDS = ("file", "synthetic")
_CONTENT_ID = re.compile(r"^file-[0-9a-f]{16}$")


@dataclass(frozen=True)
class DownloadConfig:
    root: Path = field(metadata={"help": "Dataset root directory (sources/, records/, lock.csv)."})
    spec: str | None = field(default=None, metadata={"help": "A spec path or a name in manifests/."})
    lock: Path | None = field(default=None, metadata={"help": "A lock file; wins over resolving the spec."})
    jobs: int = field(default=1, metadata={"help": "Concurrent downloads.", "min": 1})
    retries: int = field(default=3, metadata={"help": "yt-dlp retries per request / fragment within one attempt.", "min": 0})
    backoff_s: float = field(default=1.0, metadata={"help": "Sleep before yt-dlp retry n is this * 2**n seconds (capped at 60).", "min": 0.0})
    sleep_s: float = field(default=0.0, metadata={"help": "Seconds to wait before each network download (5-10 for YouTube).", "min": 0.0})
    rate_limit: str | None = field(default=None, metadata={"help": "Bandwidth cap per download, e.g. 2M (bytes/s)."})
    bandwidth: str | None = field(default=None, metadata={"help": "Global bandwidth cap over all concurrent downloads, e.g. 8M (bytes/s): each of --jobs downloads gets its share (yt-dlp limits per download; hf files are not capped)."})
    per_host: int = field(default=2, metadata={"help": "Concurrent fetches per host (scheme, name and port), whatever --jobs is.", "min": 1})
    host_interval_s: float = field(default=0.0, metadata={"help": "Minimum seconds between the starts of two fetches from one host.", "min": 0.0})
    fetch_retries: int = field(default=3, metadata={"help": "Retries of a whole fetch within one attempt on HTTP 408/425/429/5xx: wait --backoff * 2**n with jitter, at least the server's Retry-After, at most --max-backoff.", "min": 0})
    max_backoff_s: float = field(default=60.0, metadata={"help": "Longest wait between fetch retries, Retry-After included (seconds).", "min": 0.0})
    dry_run: bool = field(default=False, metadata={"help": "Print what would be fetched (kind, id, title, duration) and the totals; fetch and write nothing."})
    cookies: str | None = field(default=None, metadata={"help": "Netscape cookies file for yt-dlp."})
    format: str = field(default=DEFAULT_FORMAT, metadata={"help": "yt-dlp format selector; the default picks the smallest rendition >= 360p with audio."})
    partition: str = field(default="0/1", metadata={"help": "Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."})
    min_duration_s: float | None = field(default=None, metadata={"help": "Reject shorter sources (default: spec skip_start_s + min_clip_s, else 1.6 s)."})
    retry_failed: bool = field(default=False, metadata={"help": "Also retry sources that failed permanently."})
    socket_timeout_s: float = field(default=30.0, metadata={"help": "yt-dlp socket timeout in seconds."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def per_download_rate(self) -> str | None:
        """yt-dlp's per-download ratelimit from --rate-limit and this download's share of --bandwidth."""
        from yt_dlp.utils import parse_bytes

        rates = []
        for flag, value, share in (("--rate-limit", self.rate_limit, 1), ("--bandwidth", self.bandwidth, self.jobs)):
            if value:
                rate = parse_bytes(value)
                if rate is None:
                    raise ConfigError(f"{flag} {value!r}: expected bytes per second like 500K or 2M")
                rates.append(split_bandwidth(rate, share))
        return str(int(min(rates))) if rates else None

    def fetch_options(self) -> ytdlp.FetchOptions:
        return ytdlp.FetchOptions(format=self.format, retries=self.retries, backoff_s=self.backoff_s,
                                  sleep_s=self.sleep_s, rate_limit=self.per_download_rate(), cookies=self.cookies,
                                  socket_timeout_s=self.socket_timeout_s)


@dataclass
class DownloadSummary:
    root: Path
    records: list[SourceRecord] = field(default_factory=list)  # one per selected source, sorted by id
    skipped: int = 0  # already done (or permanently failed) before this run

    def count(self, status: str, error_class: str | None = None) -> int:
        return sum(1 for r in self.records if r.status == status and (error_class is None or r.error_class == error_class))

    @property
    def ok(self) -> int:
        return self.count(OK)

    @property
    def failed_permanent(self) -> int:
        return self.count(FAILED, PERMANENT)

    @property
    def failed_transient(self) -> int:
        return self.count(FAILED, TRANSIENT)

    @property
    def exit_code(self) -> int:
        """0 all ok; 3 (EXIT_TRANSIENT) transient failures remain: rerun to retry; 1 only permanent ones."""
        if self.failed_transient:
            return EXIT_TRANSIENT
        return EXIT_FAILED if self.failed_permanent else EXIT_OK

    def as_dict(self) -> dict[str, int]:
        return {"total": len(self.records), "ok": self.ok, "failed_permanent": self.failed_permanent,
                "failed_transient": self.failed_transient, "skipped": self.skipped}


# ---- fetching one source -----------------------------------------------------------------------------


def _fetch_synthetic(entry: SourceEntry, work: Path) -> tuple[Path, dict]:
    if entry.duration_s is None:
        raise SourceFailure(PERMANENT, f"{entry.source_id}: synthetic row without duration_s in the lock file")
    path = work / f"{entry.source_id}.mp4"
    render_synthetic(path, int(entry.id), float(entry.duration_s))
    return path, {"fetcher": "avbench.curate.synthetic"}


def _path_problem(p: str) -> str | None:
    """Why the listed path `p` cannot be copied, with the fix; None when it is a readable file."""
    fix = "fix it in the spec's [[sources]] paths"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return f"{p}: {'broken symlink' if os.path.islink(p) else 'file not found'}; {fix}"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{p}: symlink loop; point the link at a media file or remove it, then {fix}"
        return f"{p}: cannot read ({e.strerror}); {fix}"
    if stat.S_ISDIR(st.st_mode):
        return f"{p}: is a directory, not a media file; list its files instead (e.g. '{p}/*.mp4') in the spec's [[sources]] paths"
    if not stat.S_ISREG(st.st_mode):
        return f"{p}: not a regular file; {fix}"
    return None


def _fetch_file(entry: SourceEntry, work: Path) -> tuple[Path, dict]:
    paths = file_paths(entry)
    problems = [(p, _path_problem(p)) for p in paths]
    readable = [p for p, why in problems if why is None]
    if not readable:
        raise SourceFailure(PERMANENT, problems[0][1])
    src = readable[0]
    if entry.source_id.startswith("file-unread-"):
        raise SourceFailure(PERMANENT, f"{src}: could not be read when the lock file was written; pin it again "
                                       f"(download from the spec, or `avbench resolve`)")
    # Copy before probing and hashing: the original may change while we read it.
    path = work / f"{entry.source_id}{Path(src).suffix.lower() or '.bin'}"
    shutil.copyfile(src, path)
    digest = sha256_file(path)
    if entry.source_id != f"file-{digest[:16]}":
        why = (f"its bytes changed since the lock file pinned them as {entry.source_id}" if _CONTENT_ID.match(entry.source_id)
               else f"the lock file names it {entry.source_id}, an id from its path (older avbench)")
        raise SourceFailure(PERMANENT, f"{src}: {why}; pin it again (download from the spec, or `avbench resolve`)")
    return path, {"fetcher": "copy", "sha256": digest}


def _label(entry: SourceEntry) -> str | None:
    """What failure messages call the file: the user's path for local files (not the work copy's name)."""
    return file_paths(entry)[0] if entry.kind == "file" else None


def _host(entry: SourceEntry) -> str:
    url = (os.environ.get("HF_ENDPOINT") or entry.url) if entry.kind == "hf" else entry.url
    return urllib.parse.urlsplit(url).netloc


def _fetch_network(entry: SourceEntry, cfg: DownloadConfig, work: Path) -> tuple[Path, dict]:
    """yt-dlp (or huggingface_hub for hf rows) inside this host's slot, retried on 429/5xx (throttle.py)."""
    ytdlp.check_url(entry.url)
    host, limiter = _host(entry), host_limiter(cfg.per_host, cfg.host_interval_s)
    if entry.kind == "hf":
        def call():  # huggingface_hub offers no per-request hook: pace the fetch (a HEAD and a GET)
            limiter.pace(host)
            return hfhub.fetch(entry.url, entry.id, work, entry.source_id)
        hint = hfhub.retry_hint
    else:
        fo = cfg.fetch_options()
        call, hint = (lambda: ytdlp.fetch(entry.url, fo, work, entry.source_id, before_request=limiter.pace)), ytdlp.retry_hint
    result, _ = retry_fetch(call, host=host, limiter=limiter,
                            backoff=Backoff(cfg.backoff_s, cfg.max_backoff_s, seed=entry.source_id),
                            retries=cfg.fetch_retries, retryable=hint)
    return result


def fetch_one(entry: SourceEntry, cfg: DownloadConfig, min_duration_s: float) -> SourceRecord:
    """Fetch, probe, hash and file one source; always returns (and writes) its record."""
    root = Path(cfg.root)
    prev = SourceRecord.read(root, entry.source_id)
    rec = SourceRecord.from_entry(entry, attempts=(prev.attempts if prev else 0) + 1)
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
            path, meta = _fetch_network(entry, cfg, work)
        digest = meta.pop("sha256", None)
        # yt-dlp's provenance wins over the lock row's where it has a value
        rec = rec.replace(**{k: v for k, v in meta.items() if v or getattr(rec, k) is None})
        probe = probe_media(path, min_duration_s, label=_label(entry))
        digest = digest or sha256_file(path)
        ext = path.suffix.lower() or ".bin"
        final = root / "sources" / f"{digest}{ext}"
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(path, final)  # same file system: atomic, and identical content may overwrite safely
        rec = rec.replace(status=OK, sha256=digest, path=f"sources/{digest}{ext}", bytes=final.stat().st_size,
                          duration_s=probe.duration_s, probe=probe.to_dict())
    except Exception as e:  # noqa: BLE001 - one broken source must never stop the run
        cls, msg = (entry.kind == "hf" and hfhub.classify(e)) or ytdlp.classify(e)
        if isinstance(e, MediaRejected) and entry.kind in LOCAL_KINDS and cls == TRANSIENT:
            cls, msg = PERMANENT, f"{msg}; a local source reads the same every time: replace the file"
        if entry.url and entry.url not in msg:
            msg = f"{entry.url}: {msg}"
        rec = rec.replace(status=FAILED, error_class=cls, error=msg)
        keep_work = cls == TRANSIENT and entry.kind not in LOCAL_KINDS  # a `.part` resumes next time
        if isinstance(e, MediaRejected) and path is not None:
            # yt-dlp finished this file and would reuse it ("already downloaded"); the probe says it is
            # bad, so the next attempt must fetch it again
            path.unlink(missing_ok=True)
    rec.write(root)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return rec


# ---- the stage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadStage:
    """The download as a `Stage`: `run` writes the source's record (for failures too), then raises
    SourceFailure for a failed one so that run_stage records and counts it like any stage's failure."""

    cfg: DownloadConfig
    entries: tuple[SourceEntry, ...]
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    name: str = "download"
    parallelism: str = "threads"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        out = []
        for e in partition.select(self.entries, key=lambda e: e.source_id):
            rec = SourceRecord.read(root, e.source_id)
            out.append(Job(e.source_id, done=rec is not None and rec.is_done(root, self.cfg.retry_failed), arg=e))
        return out

    def run(self, job: Job) -> dict:
        rec = fetch_one(job.arg, self.cfg, self.min_duration_s)
        if not rec.ok:
            raise SourceFailure(rec.error_class or TRANSIENT, rec.error or "failed")
        return rec.to_dict()

    def cleanup(self, root: Path, job: Job) -> None:
        # A kill between writing a record's temp copy and renaming it leaves `.tmp-<id>.json.*`; local
        # sources have nothing to resume, so their work copy goes too (yt-dlp's `.part` files stay).
        for leftover in (Path(root) / "records").glob(f".tmp-{job.source_id}.json.*"):
            leftover.unlink(missing_ok=True)
        if job.arg.kind in LOCAL_KINDS:
            shutil.rmtree(Path(root) / ".tmp" / job.source_id, ignore_errors=True)


def load_entries(cfg: DownloadConfig, *, write: bool = True) -> tuple[list[SourceEntry], DatasetSpec | None]:
    """The pinned sources for this root (and the spec, if one was given); writes ROOT/lock.csv (unless
    not `write`: a dry run).

    Order of precedence: an explicit lock file; ROOT/lock.csv when the spec needs a lookup (searches,
    hub listings: never re-run them once pinned); otherwise the spec expanded offline.
    """
    root = Path(cfg.root)
    root_lock = root / "lock.csv"
    spec = load_spec(cfg.spec) if cfg.spec else None
    if cfg.lock is not None:
        entries = read_lock(cfg.lock)
    elif spec is None:
        raise ConfigError("download needs a spec or a lock file")
    elif needs_lookup(spec) and root_lock.exists():
        entries = read_lock(root_lock)
    else:
        if needs_lookup(spec) and Partition.parse(cfg.partition).count > 1:
            raise ConfigError(
                f"{spec.path}: searches must be pinned once before a partitioned run; run "
                f"`avbench resolve {spec.path} --out {root_lock}` first"
            )
        entries = resolve_entries(spec)
    data = lock_bytes(entries)
    if write and (not root_lock.exists() or root_lock.read_bytes() != data):
        atomic_write_bytes(root_lock, data)
    return entries, spec


def download_stage(cfg: DownloadConfig, entries: list[SourceEntry] | None = None) -> DownloadStage:
    """The stage for `cfg` (reading the spec or lock when `entries` is None); checks the yt-dlp options
    first, so a bad --rate-limit or --cookies fails before any download."""
    Path(cfg.root).mkdir(parents=True, exist_ok=True)
    spec = None
    if entries is None:
        entries, spec = load_entries(cfg)
    elif cfg.spec:
        spec = load_spec(cfg.spec)
    if cfg.min_duration_s is not None:
        min_dur = cfg.min_duration_s
    elif spec is not None:
        min_dur = spec.clip.skip_start_s + spec.clip.min_clip_s
    else:
        min_dur = DEFAULT_MIN_DURATION_S
    if any(e.kind not in LOCAL_KINDS for e in entries):
        ensure_ffmpeg_on_path()  # yt-dlp merges separate audio/video streams with it
        ytdlp.download_options(cfg.fetch_options(), Path(cfg.root), "check")
    return DownloadStage(cfg=cfg, entries=tuple(entries), min_duration_s=min_dur)


def download_sources(
    cfg: DownloadConfig,
    *,
    entries: list[SourceEntry] | None = None,
    progress: bool | Progress | None = None,
) -> DownloadSummary:
    """Fetch this partition's sources into `cfg.root`; resumable; returns the per-source records.

    `entries` skips the spec/lock lookup (the caller already has them); `progress` is a shared rich
    Progress, True/False, or None for `cfg.progress`.
    """
    root = Path(cfg.root)
    stage = download_stage(cfg, entries)
    part = Partition.parse(cfg.partition)
    result = run_stage(stage, root, part, workers=max(1, cfg.jobs),
                       progress=cfg.progress if progress is None else progress)
    summary = DownloadSummary(root=root, skipped=result.skipped)
    for job in stage.jobs(root, part):
        rec = SourceRecord.read(root, job.source_id)
        if rec is None:  # its record could not be written (disk full?): report what run_stage caught
            rec = SourceRecord.from_entry(job.arg).replace(
                error_class=result.failure_classes.get(job.source_id, TRANSIENT),
                error=result.failures.get(job.source_id, f"no record written to {record_path(root, job.source_id)}"))
        summary.records.append(rec)
    tmp = root / ".tmp"
    if tmp.is_dir() and not any(tmp.iterdir()):
        tmp.rmdir()
    return summary


# ---- dry run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadPlan:
    todo: tuple[SourceEntry, ...]  # what a download would fetch now, by source id
    done: int  # already ok (or failed permanently, without retry_failed)

    def text(self) -> str:
        """One line per source (kind, id or URL, title, duration where the lock knows it), then the totals."""
        lines = []
        for e in self.todo:
            what = e.url or e.id
            dur = f"{e.duration_s:.1f} s" if e.duration_s is not None else "?"
            lines.append(f"{e.kind}\t{what}\t{e.title or '-'}\t{dur}")
        known = [e.duration_s for e in self.todo if e.duration_s is not None]
        unknown = len(self.todo) - len(known)
        total = f"would fetch {len(self.todo)} sources, {sum(known) / 3600:.2f} h"
        if unknown:
            total += f" (+ {unknown} of unknown duration: durations of urls, youtube ids and hf files are known after download)"
        if self.done:
            total += f"; {self.done} already done"
        return "\n".join([*lines, total])


def plan_download(cfg: DownloadConfig) -> DownloadPlan:
    """What `download_sources(cfg)` would fetch; reads the spec/lock and records, fetches and writes
    nothing (a spec that needs a lookup and has no ROOT/lock.csv is resolved, i.e. listed, not pinned)."""
    root = Path(cfg.root)
    entries, _ = load_entries(cfg, write=False)
    part = Partition.parse(cfg.partition)
    todo, done = [], 0
    for e in part.select(entries, key=lambda e: e.source_id):
        rec = SourceRecord.read(root, e.source_id)
        if rec is not None and rec.is_done(root, cfg.retry_failed):
            done += 1
        else:
            todo.append(e)
    return DownloadPlan(todo=tuple(todo), done=done)
