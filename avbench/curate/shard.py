"""`avbench shard`: resampled clips → WebDataset tars per frame size and split.

Layout: `DIR/shards/<size>/<split>/<split>-<size>-%06d.tar`, members `<key>.flac`, `<key>.json`,
`<key>.mp4`; `DIR/shards/index.json` (per shard: samples, bytes, sha256) and `DIR/shards/stats.json`.

Reproducible bytes: samples are ordered by a salted hash of their key (never by completion order),
every shard but the last of a split holds exactly `samples_per_shard` samples, tar members have mtime 0,
owner 0/0 "avbench", mode 0444, and the JSON member has sorted keys and no wall-clock times.

The stage is a merge over all sources, so it is not partitioned; it rewrites the shards it owns on every
run (a few seconds of copying). `index.json` is removed first and written last: it is the completion
marker, and a reader never sees an index that disagrees with the tars beside it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy

from avbench.curate.partition import Partition
from avbench.curate.records import ready_sources
from avbench.curate.scenes import read_scenes_meta
from avbench.curate.spec import DatasetSpec
from avbench.curate.split import SPLITS, assign_split, order_key
from avbench.curate.stage import Job
from avbench.dataset_index import INDEX_FORMAT, load_index, write_index  # noqa: F401 - load_index: re-export
from avbench.io import atomic_write_json, json_bytes, write_member_tar

TARGET_SHARD_BYTES = 1_000_000_000  # ~1 GB shards when the spec leaves samples_per_shard at 0


@dataclass(frozen=True)
class ShardConfig:
    sizes: tuple[int, ...] | None = field(default=None, metadata={
        "help": "Frame size(s) to shard (default: all of the spec's)."})
    samples_per_shard: int = field(default=0, metadata={
        "help": "Samples per tar (0 = the spec's; if 0 there too, about target_shard_bytes per shard).", "min": 0})
    target_shard_bytes: int = field(default=TARGET_SHARD_BYTES, metadata={
        "help": "Shard size aimed at when no samples_per_shard is set.", "min": 1})


@dataclass
class ShardSummary:
    shards: int = 0
    samples: dict[str, int] = field(default_factory=dict)  # "<size>/<split>" → samples
    sources_ready: int = 0
    sources_missing_clips: list[str] = field(default_factory=list)
    sources_failed: dict[str, int] = field(default_factory=dict)  # stage → count
    sources_partial: dict[str, float | None] = field(default_factory=dict)  # id → damage_at_s (clips kept)
    clip_errors: list[str] = field(default_factory=list)
    index_path: Path | None = None


@dataclass(frozen=True)
class _Sample:
    key: str
    split: str
    size: int
    mp4: Path
    flac: Path
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return self.mp4.stat().st_size + self.flac.stat().st_size + 2048


# ---- reading the resample stage's outputs ------------------------------------------------------------


def read_clip_table(clip_dir: Path) -> tuple[dict, list[dict]]:
    """(source-level metadata, clips sorted by key) from `clips.json`, which resample writes last."""
    data = json.loads((clip_dir / "clips.json").read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {"clips": data}
    head = {k: v for k, v in data.items() if k != "clips"}
    return head, sorted(data.get("clips", []), key=lambda c: c["key"])


def filter_reasons(clip: dict) -> list[str]:
    """Why resample's filters rejected a clip (`keep: false` + `reasons`); empty when it is kept."""
    if clip.get("keep", True):
        return []
    return sorted(str(r) for r in clip.get("reasons") or ["filtered"])


def _scene_detector(root: Path, source_id: str) -> dict | None:
    """Detector name, parameters and version recorded by scene-cut (in the parquet's metadata)."""
    try:
        return read_scenes_meta(root, source_id)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _count_media(mp4: Path, flac: Path) -> tuple[int, int, int]:
    """(video frames, audio samples, audio rate) read from the files themselves, not trusted metadata."""
    import av
    import soundfile as sf

    with av.open(str(mp4)) as c:
        vs = c.streams.video[0]
        frames = vs.frames or sum(1 for _ in c.demux(vs) if _.size)
    info = sf.info(str(flac))
    return frames, info.frames, info.samplerate


def library_versions() -> dict[str, str]:
    """Versions of everything that shapes the bytes (recorded in every sample; never a timestamp)."""
    import av
    import soundfile

    out = {"av": av.__version__, "numpy": numpy.__version__, "libsndfile": soundfile.__libsndfile_version__}
    for lib, ver in sorted(av.library_versions.items()):
        out[lib] = ".".join(map(str, ver))
    for dist in ("avbench", "scenedetect-headless", "soxr", "webdataset"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def _source_provenance(rec: dict) -> dict:
    keep = ("source_id", "kind", "url", "sha256", "duration_s", "license", "title", "format", "channel", "upload_date")
    return {k: rec[k] for k in keep if k in rec}


def _failed_stages(root: Path, ready_ids: set[str]) -> dict[str, int]:
    failed: Counter[str] = Counter()
    for rec_path in sorted((root / "records").glob("[!.]*.json")):  # .tmp-* files are not records
        with contextlib.suppress(ValueError, OSError):
            if json.loads(rec_path.read_text()).get("status") == "failed":
                failed["download"] += 1
    fdir = root / "failures"
    if fdir.is_dir():
        for stage_dir in sorted(p for p in fdir.iterdir() if p.is_dir()):
            ids = {p.stem for p in stage_dir.glob("[!.]*.json")}
            if ids & ready_ids:
                failed[stage_dir.name] += len(ids & ready_ids)
    return dict(sorted(failed.items()))


# ---- writing ------------------------------------------------------------------------------------------


def write_tar(path: Path, samples: list[_Sample]) -> tuple[int, str]:
    """Write one shard atomically; returns (bytes, sha256). Each sample's media is read when written."""
    return write_member_tar(path, ((s.key, {"flac": s.flac.read_bytes(), "json": json_bytes(s.meta),
                                            "mp4": s.mp4.read_bytes()}) for s in samples))


def _samples_per_shard(spec: DatasetSpec, cfg: ShardConfig, samples: list[_Sample]) -> int:
    fixed = cfg.samples_per_shard or spec.output.samples_per_shard
    if fixed > 0:
        return fixed
    if not samples:
        return 1
    mean = sum(s.nbytes for s in samples) / len(samples)
    return max(1, math.floor(cfg.target_shard_bytes / mean))


def shard_dataset(spec: DatasetSpec, root: str | Path, cfg: ShardConfig = ShardConfig(), progress=None) -> ShardSummary:
    """Write all shards, `index.json` and `stats.json` under `root/shards`. Returns a summary."""
    root = Path(root)
    out = root / "shards"
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").unlink(missing_ok=True)  # the marker goes first, comes back last
    sizes = tuple(cfg.sizes or spec.output.sizes)
    versions = library_versions()
    summary = ShardSummary()

    ready = sorted(ready_sources(root), key=lambda r: r["source_id"])
    summary.sources_ready = len(ready)
    summary.sources_failed = _failed_stages(root, {r["source_id"] for r in ready})
    by_group: dict[tuple[int, str], list[_Sample]] = defaultdict(list)
    stats = {sp: _empty_split_stats() for sp in SPLITS}

    for rec in ready:
        sid = rec["source_id"]
        split = assign_split(sid, spec.split)
        st = stats[split]
        clip_dir = root / "clips" / sid
        if not (clip_dir / "clips.json").exists():
            summary.sources_missing_clips.append(sid)
            continue
        processing, clips = read_clip_table(clip_dir)
        made_from, now = processing.get("source_sha256"), rec.get("sha256")
        if made_from and now and made_from != now:  # re-downloaded since: the clips are of other bytes
            summary.clip_errors.append(
                f"{clip_dir / 'clips.json'}: made from source {made_from[:12]}, but records/{sid}.json now has "
                f"{now[:12]}; delete scenes/{sid}.parquet and clips/{sid}/, then rerun scene-cut and resample")
            continue
        st["sources"] += 1
        if processing.get("status") == "partial":
            summary.sources_partial[sid] = processing.get("damage_at_s")
        st["hours_in"] += float(rec.get("duration_s") or 0.0) / 3600.0
        detector = _scene_detector(root, sid)
        for clip in clips:
            key = clip["key"]
            reasons = filter_reasons(clip)
            if reasons:
                st["clips_filtered"] += 1
                for r in reasons:
                    st["filtered_by_reason"][r] = st["filtered_by_reason"].get(r, 0) + 1
                continue
            flac = clip_dir / str(clip.get("audio") or f"{key}.flac")
            checked, ready_sizes = None, []  # a clip goes in at every size or at none
            for size in sizes:
                mp4 = clip_dir / str((clip.get("video") or {}).get(str(size)) or f"{key}.{size}.mp4")
                if not (mp4.exists() and flac.exists()):
                    summary.clip_errors.append(f"{clip_dir}: clip {key} has no {mp4.name} or {flac.name}; rerun resample")
                    break
                frames, nsamp, rate = _count_media(mp4, flac)
                if nsamp != frames * rate // spec.output.fps:
                    summary.clip_errors.append(
                        f"{mp4}: {frames} frames but {nsamp} audio samples (want {frames * rate // spec.output.fps}); rerun resample"
                    )
                    break
                meta = {
                    "key": key,
                    "split": split,
                    "spec": {"name": spec.name, "hash": spec.spec_hash},
                    "source": _source_provenance(rec),
                    "clip": clip,
                    "processing": processing,
                    "scenes": detector,
                    "video": {"fps": spec.output.fps, "size": size, "frames": frames, "resize": spec.output.resize},
                    "audio": {"sample_rate": rate, "channels": 1, "samples": nsamp},
                    "versions": versions,
                }
                ready_sizes.append(_Sample(key, split, size, mp4, flac, meta))
            else:
                checked = ready_sizes[0].meta["video"]["frames"] if ready_sizes else None
                for sample in ready_sizes:
                    by_group[(sample.size, split)].append(sample)
            if checked is not None:
                st["clips_kept"] += 1
                st["hours_out"] += checked / spec.output.fps / 3600.0

    index_rows = []
    per_size = {}
    total_shards = 0
    for size in sizes:
        n = _samples_per_shard(spec, cfg, [s for (sz, _), v in by_group.items() if sz == size for s in v])
        per_size[size] = n
        total_shards += sum(math.ceil(len(by_group[(size, sp)]) / n) for sp in SPLITS)
    task = progress.add_task("shard", total=total_shards) if progress is not None else None

    for size in sizes:
        n = per_size[size]
        for split in SPLITS:
            split_dir = out / str(size) / split
            items = sorted(by_group.get((size, split), []), key=lambda s: order_key(spec.split.salt, s.key))
            written = set()
            for i in range(0, len(items), n):
                path = split_dir / f"{split}-{size}-{i // n:06d}.tar"
                nbytes, digest = write_tar(path, items[i : i + n])
                written.add(path.name)
                index_rows.append(
                    {
                        "path": path.relative_to(out).as_posix(),
                        "size": size,
                        "split": split,
                        "samples": len(items[i : i + n]),
                        "bytes": nbytes,
                        "sha256": digest,
                    }
                )
                summary.shards += 1
                if task is not None:
                    progress.advance(task)
            if split_dir.is_dir():  # shards of an earlier, larger build would otherwise be picked up
                for stale in split_dir.glob("*.tar"):
                    if stale.name not in written:
                        stale.unlink()
            summary.samples[f"{size}/{split}"] = len(items)

    stats_doc = {
        "spec": {"name": spec.name, "hash": spec.spec_hash},
        "sources": {
            "ready": len(ready),
            "missing_clips": sorted(summary.sources_missing_clips),
            "failed_by_stage": summary.sources_failed,
            "partial": dict(sorted(summary.sources_partial.items())),
        },
        "clip_errors": summary.clip_errors,
        "splits": {sp: _round_stats(stats[sp]) for sp in SPLITS},
        "total": _round_stats(_sum_stats(stats.values())),
    }
    atomic_write_json(out / "stats.json", stats_doc)
    index = {
        "format": INDEX_FORMAT,
        "spec": {"name": spec.name, "hash": spec.spec_hash},
        "split_salt": spec.split.salt,
        "fps": spec.output.fps,
        "sample_rate": spec.output.sample_rate,
        "samples_per_shard": {str(k): v for k, v in per_size.items()},
        "shards": index_rows,
    }
    summary.index_path = write_index(root, index)
    return summary


def _empty_split_stats() -> dict:
    return {"sources": 0, "hours_in": 0.0, "hours_out": 0.0, "clips_kept": 0, "clips_filtered": 0, "filtered_by_reason": {}}


def _sum_stats(items) -> dict:
    total = _empty_split_stats()
    for st in items:
        for k in ("sources", "hours_in", "hours_out", "clips_kept", "clips_filtered"):
            total[k] += st[k]
        for r, c in st["filtered_by_reason"].items():
            total["filtered_by_reason"][r] = total["filtered_by_reason"].get(r, 0) + c
    return total


def _round_stats(st: dict) -> dict:
    # rounded so that float summation order can never change the bytes of stats.json
    return {**st, "hours_in": round(st["hours_in"], 6), "hours_out": round(st["hours_out"], 6),
            "filtered_by_reason": dict(sorted(st["filtered_by_reason"].items()))}


@dataclass(frozen=True)
class ShardStage:
    """The shard stage (Stage protocol): one job ("shards"), a merge over every source of the root.

    Never partitioned (a partitioned run has no shard job) and never `done`: it rewrites the shards it
    owns on every run, so sources finished since the last run are included."""

    spec: DatasetSpec
    cfg: ShardConfig = ShardConfig()
    name: str = "shard"
    parallelism: str = "processes"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        return [] if partition.count > 1 else [Job("shards", False, Path(root))]

    def run(self, job: Job) -> dict[str, Any]:
        return asdict(shard_dataset(self.spec, job.arg, self.cfg))

    def cleanup(self, root: Path, job: Job) -> None:
        """atomic_path's temp files that a kill during sharding left (tars, index, stats)."""
        base = Path(root) / "shards"
        if base.is_dir():
            for tmp in base.rglob(".tmp-*"):
                tmp.unlink(missing_ok=True)
