"""Source records: `ROOT/records/<source_id>.json`, what the download stage found out about one source.

The schema is written once, here (`SourceRecord`); the download stage writes records, every later
stage reads them through `ready_sources`, and test helpers that fake a downloaded root use
`SourceRecord` too. A record is a frozen dataclass that can also be read like the JSON mapping it is
stored as (`rec["path"]`, `rec.get("ranges")`), so code written against the JSON keeps working.

No wall-clock times are recorded, so the records of two identical runs are identical bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.curate.lock import read_lock
from avbench.curate.partition import Partition
from avbench.curate.sources import SourceEntry, file_paths
from avbench.errors import PERMANENT
from avbench.io import atomic_write_json

OK, FAILED = "ok", "failed"

# Written only when set: the yt-dlp provenance exists for fetched sources only, `paths` for local files;
# leaving them out elsewhere keeps each kind's record (and the shard metadata copied from it) unchanged.
_OPTIONAL = ("paths", "extractor", "format_id", "format", "channel_id", "availability")


@dataclass(frozen=True)
class SourceRecord(Mapping):
    source_id: str
    kind: str = ""  # youtube | url | hf | file | synthetic
    id: str = ""  # as in the lock file
    url: str = ""
    title: str = ""
    channel: str = ""
    license: str = ""
    upload_date: str = ""
    query: str = ""
    ranges: list | None = None  # [[start_s, end_s], ...] to keep, when the spec restricts the source
    paths: list[str] | None = None  # file sources: every path these bytes were found under (provenance)
    status: str = FAILED  # ok | failed
    error_class: str | None = None  # permanent | transient, for failures
    error: str | None = None  # one line naming the URL or the user's file
    attempts: int = 0  # across runs
    sha256: str | None = None
    path: str | None = None  # sources/<sha256>.<ext>, relative to the root
    bytes: int | None = None
    duration_s: float | None = None
    probe: dict | None = None  # ProbeResult.to_dict()
    fetcher: str = ""  # "yt-dlp <version>", "copy", "avbench.curate.synthetic"
    extractor: str | None = None
    format_id: str | None = None
    format: str | None = None
    channel_id: str | None = None
    availability: str | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)  # unknown keys of a newer schema

    # ---- construction and I/O ------------------------------------------------------------------------

    @classmethod
    def from_entry(cls, entry: SourceEntry, attempts: int = 1) -> SourceRecord:
        """A fresh (failed, not yet fetched) record of a lock row."""
        return cls(
            source_id=entry.source_id, kind=entry.kind, id=entry.id, url=entry.url, title=entry.title,
            channel=entry.channel, license=entry.license, upload_date=entry.upload_date, query=entry.query,
            ranges=json.loads(entry.ranges) if entry.ranges else None,
            paths=file_paths(entry) if entry.kind == "file" else None, attempts=attempts,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceRecord:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for k in _OPTIONAL:
            if d[k] is None:
                del d[k]
        return {**self.extra, **d}

    def write(self, root: str | Path) -> Path:
        path = record_path(root, self.source_id)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def read(cls, root: str | Path, source_id: str) -> SourceRecord | None:
        """The record of `source_id`, or None when there is none (or it is unreadable)."""
        return _read(record_path(root, source_id))

    def replace(self, **changes: Any) -> SourceRecord:
        return dataclasses.replace(self, **changes)

    # ---- state ---------------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.status == OK

    def present(self, root: str | Path) -> bool:
        """An ok record whose cached file exists."""
        return self.ok and bool(self.path) and (Path(root) / self.path).is_file()

    def is_done(self, root: str | Path, retry_failed: bool = False) -> bool:
        """Nothing left for the download stage: fetched and present, or failed for good (unless retried)."""
        if self.ok:
            return self.present(root)
        return self.error_class == PERMANENT and not retry_failed

    # ---- read like the stored JSON -------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        d = self.to_dict()
        return d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def record_path(root: str | Path, source_id: str) -> Path:
    return Path(root) / "records" / f"{source_id}.json"


def _read(path: Path) -> SourceRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # records are written atomically; an unreadable one is treated as absent
    if not isinstance(data, dict) or not data.get("source_id"):
        return None
    return SourceRecord.from_dict(data)


def all_records(root: str | Path) -> list[SourceRecord]:
    """Every readable record under ROOT/records, sorted by source_id."""
    # "[!.]": pathlib's "*" matches dot files, and a kill -9 can leave atomic_path's .tmp-* copy behind
    recs = [_read(p) for p in sorted((Path(root) / "records").glob("[!.]*.json"))]
    return sorted((r for r in recs if r is not None), key=lambda r: r.source_id)


def ready_sources(root: str | Path, partition: Partition | None = None) -> list[SourceRecord]:
    """Records of the sources that are ok and present in the cache, sorted by source_id.

    When ROOT/lock.csv exists only its sources count: records of sources dropped from the spec since
    an earlier run stay on disk (nothing is deleted) but are not part of the dataset any more.
    `partition` slices the lock file's ids (as `download` does), *then* keeps the ready ones, so every
    stage of one SLURM array task works on the same sources whatever the others have finished.
    """
    root = Path(root)
    records = all_records(root)
    wanted: set[str] | None = None
    if (root / "lock.csv").exists():
        wanted = {e.source_id for e in read_lock(root / "lock.csv")}
    if partition is not None and partition.count > 1:
        universe = wanted if wanted is not None else {r.source_id for r in records}
        wanted = set(partition.select(universe))
    return [r for r in records if (wanted is None or r.source_id in wanted) and r.present(root)]
