"""Expand a spec's `[[sources]]` into concrete entries: one row per source media file.

An entry is what the lock file pins and what the download stage fetches. Kinds that need no network
(youtube ids, urls, files, synthetic) expand here directly; Hugging Face listings go through
huggingface_hub (`hfhub.py`); YouTube searches are resolved in `resolve.py`.

Source ids are file-name safe (no dots or slashes): a YouTube id, `url-<12 hex>`, `file-<16 hex>` (of
the file's bytes: a source is its content, wherever it lies), `hf-<12 hex>` (of `repo/path`, so
re-pinning a newer revision keeps the id) or `synth-<seed>-<i>`.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from avbench.curate import hfhub
from avbench.curate.spec import (
    DatasetSpec,
    FileSource,
    HFSource,
    Source,
    SyntheticSource,
    UrlSource,
    YouTubeSource,
)
from avbench.curate.synthetic import plan_synthetic
from avbench.errors import CurateError
from avbench.io import sha256_file


class SourceError(CurateError, ValueError):
    """A source cannot be expanded; the message names the source and the fix (one line)."""


@dataclass(frozen=True)
class SourceEntry:
    """One pinned source. `kind` is the fetch method: youtube | url | hf | file | synthetic."""

    source_id: str
    kind: str
    id: str  # YouTube id, URL, repo path, absolute file path(s) (see file_paths), or the synthetic seed
    url: str = ""  # what the downloader fetches; empty for file and synthetic
    title: str = ""
    channel: str = ""
    duration_s: float | None = None
    license: str = ""
    upload_date: str = ""  # YYYYMMDD as yt-dlp reports it
    query: str = ""  # the search that found it, if any
    ranges: str = ""  # JSON [[start_s, end_s], ...] to keep, if the spec restricts the source

    def to_row(self) -> dict:
        return asdict(self)


LOCK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SourceEntry))
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def youtube_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def _check_id(source_id: str, where: str) -> str:
    if not _SAFE_ID.match(source_id):
        raise SourceError(f"{where}: source id {source_id!r} may only use letters, digits, '-' and '_'")
    return source_id


def expand_youtube(src: YouTubeSource, where: str) -> list[SourceEntry]:
    unknown = sorted(set(src.ranges) - set(src.ids))
    if unknown:
        raise SourceError(f"{where}: 'ranges' names {unknown[0]!r}, which is not in 'ids'")
    out = []
    for vid in src.ids:
        rng = src.ranges.get(vid)
        out.append(
            SourceEntry(
                source_id=_check_id(vid, where),
                kind="youtube",
                id=vid,
                url=youtube_url(vid),
                ranges=json.dumps([list(r) for r in rng]) if rng else "",
            )
        )
    return out


def expand_url(src: UrlSource, where: str) -> list[SourceEntry]:
    out = []
    for url in src.urls:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SourceError(f"{where}: {url!r} is not an http(s) URL")
        name = Path(urllib.parse.unquote(parsed.path)).name
        out.append(SourceEntry(source_id=f"url-{short_hash(url)}", kind="url", id=url, url=url, title=name))
    return out


def file_paths(entry: SourceEntry) -> list[str]:
    """The paths of a `file` row: one path, or a JSON list when the same bytes lie under several."""
    return json.loads(entry.id) if entry.id.startswith("[") else [entry.id]


def file_entry(source_id: str, paths: list[str]) -> SourceEntry:
    ordered = sorted(set(paths))
    ident = ordered[0] if len(ordered) == 1 else json.dumps(ordered)
    return SourceEntry(source_id=source_id, kind="file", id=ident, title=Path(ordered[0]).name)


def merge_entries(a: SourceEntry, b: SourceEntry) -> SourceEntry:
    """Two rows with one source id: file rows are the same bytes found twice and keep both paths; for
    other kinds the first wins (a video found by two searches keeps the first query)."""
    if a.kind == b.kind == "file":
        return file_entry(a.source_id, file_paths(a) + file_paths(b))
    return a


def expand_files(src: FileSource, base: Path, where: str) -> list[SourceEntry]:
    """One entry per distinct content: the id is `file-<16 hex of sha256(bytes)>`, the same wherever the
    files lie, so a spec and its files copied elsewhere rebuild the same dataset; the paths are kept as
    provenance. A listed path that cannot be read (missing, a directory, a symlink loop) becomes an entry
    of its own, `file-unread-<12 hex of sha256(path)>`, which the download stage records as failed with
    the reason: one bad path must not stop the others."""
    by_digest: dict[str, list[str]] = {}
    unread: list[str] = []
    seen: set[str] = set()
    for pattern in src.paths:
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        if glob.has_magic(full):
            # A folder matched by a wildcard is not something the user listed: skip it quietly.
            matches = [m for m in sorted(glob.glob(full, recursive=True)) if not os.path.isdir(m)]
            if not matches:
                raise SourceError(f"{where}: no file matches {pattern!r} (relative to {base})")
        else:
            matches = [full]
        for m in matches:
            p = os.path.abspath(m)  # not resolve(): the user's name for the file, and loops do not raise
            if p in seen:
                continue
            seen.add(p)
            try:
                by_digest.setdefault(sha256_file(p), []).append(p)
            except OSError:
                unread.append(p)
    out = [file_entry(f"file-{digest[:16]}", paths) for digest, paths in by_digest.items()]
    out += [file_entry(f"file-unread-{short_hash(p)}", [p]) for p in unread]
    return out


def expand_synthetic(src: SyntheticSource) -> list[SourceEntry]:
    return [
        SourceEntry(
            source_id=p.source_id,
            kind="synthetic",
            id=str(p.seed),
            duration_s=round(float(p.duration_s), 3),
            title=f"synthetic seed {p.seed}",
            license="generated",
        )
        for p in plan_synthetic(src)
    ]


# ---- Hugging Face ----------------------------------------------------------------------------------


def _hub_error(what: str, exc: BaseException) -> SourceError:
    """One line naming the repository and the fix, for whatever huggingface_hub raised."""
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.OfflineModeIsEnabled) or hfhub.offline():
        return SourceError(f"{what}: HF_HUB_OFFLINE is set, and listing a repository needs the hub; resolve "
                           f"once online and reuse the lock file")
    if isinstance(exc, hf.GatedRepoError):
        return SourceError(f"{what}: gated repository; accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError)):
        return SourceError(f"{what}: repository or revision not found at {hfhub.endpoint()} (HTTP "
                           f"{getattr(getattr(exc, 'response', None), 'status_code', '?')}); check the repository "
                           f"name and revision (or set HF_TOKEN for a private one)")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return SourceError(f"{what}: {hfhub.endpoint()} answered HTTP {status}; check the repository name and revision")
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    return SourceError(f"{what}: cannot reach {hfhub.endpoint()} ({reason}); resolve on a machine with network "
                       f"access and reuse the lock file, or set HF_ENDPOINT to a reachable mirror")


def list_hf_files(repo: str, pattern: str = "*", revision: str = "main") -> tuple[str, list[str], dict]:
    """(commit sha, sorted matching file paths, dataset card metadata) of a Hugging Face dataset repository,
    through huggingface_hub (HF_ENDPOINT, HF_TOKEN honoured)."""
    what = f"hf dataset {repo}"
    try:
        sha, names, card = hfhub.dataset_at(repo, revision)
    except Exception as e:  # noqa: BLE001 - huggingface_hub's errors (HTTP, network, offline): one line each
        raise _hub_error(what, e) from None
    matches = sorted(n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(Path(n).name, pattern))
    return sha, matches, card


hf_resolve_url = hfhub.resolve_url


def expand_hf(src: HFSource, where: str) -> list[SourceEntry]:
    """List the repository once and pin every matching file to the commit sha."""
    sha, files, card = list_hf_files(src.repo, src.pattern, src.revision)
    if not files:
        raise SourceError(f"{where}: hf dataset {src.repo}@{src.revision} has no file matching {src.pattern!r}")
    lic = card.get("license", "")
    lic = ",".join(lic) if isinstance(lic, list) else str(lic)
    return [
        SourceEntry(
            source_id=f"hf-{short_hash(f'{src.repo}/{f}')}",
            kind="hf",
            id=f,
            url=hf_resolve_url(src.repo, sha, f),
            title=f,
            channel=src.repo,
            license=lic,
        )
        for f in files
    ]


def expand_offline(src: Source, base: Path, where: str) -> list[SourceEntry]:
    """Entries of a source that needs no lookup; SourceError for kinds that do."""
    if isinstance(src, YouTubeSource):
        return expand_youtube(src, where)
    if isinstance(src, UrlSource):
        return expand_url(src, where)
    if isinstance(src, FileSource):
        return expand_files(src, base, where)
    if isinstance(src, SyntheticSource):
        return expand_synthetic(src)
    raise SourceError(f"{where}: {src.kind} sources need `avbench resolve` (network) first")


def needs_lookup(spec: DatasetSpec) -> bool:
    """True when expanding the spec asks a remote service (searches, hub listings)."""
    return any(s.kind in ("youtube-search", "hf") for s in spec.sources)


def spec_base(spec: DatasetSpec) -> Path:
    return spec.path.parent.resolve() if spec.path else Path.cwd()
