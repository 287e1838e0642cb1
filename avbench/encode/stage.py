"""`avbench encode ROOT --vae NAME --size S`: pixel shards → latent shards, once, with a pretrained codec.

One job per pixel shard `ROOT/shards/<S>/<split>/<stem>.tar`; it writes `ROOT/latents/<vae>/<S>/<split>/
<stem>.tar` (members: see avbench/encode/shards.py) and then a completion record `…/done/<stem>.json`
(input sha256, codec fingerprint, output bytes + sha256). A job is done when its record matches the
current pixel shard and codec and its tar still has the recorded size and sha256, so a rerun after a
kill skips finished shards and redoes the rest; the `Stage` bookkeeping (partitions, failure records
under ROOT/failures/encode/, progress) is `run_stage`'s (avbench/curate/stage.py).

Whole clips are encoded: all F frames at 10 fps (per frame through the video VAE) and exactly the
clip's F·1600 samples of 16 kHz audio (zero-padded at the end to a whole number of audio latents; the
pad is recorded per clip). Video latent frame k is clip frame k; audio latents [a0, a1) of frames
[s, s + n) follow `LatentCodec.audio_span` (window starts/lengths on multiples of `frame_step`).
Latents are the posterior mean (deterministic), stored as float16.

`ROOT/latents/<vae>/<S>/index.json` (dataset_index.LATENT_INDEX_FORMAT) is removed when any job has to
run and written when every shard of the size is done (a partitioned run writes it only if it finished
the last missing shard), so a reader never sees an index that disagrees with the tars beside it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbench.compute import check_device, resolve_device, torch_dtype
from avbench.curate.partition import Partition
from avbench.curate.stage import Job, StageSummary, run_stage
from avbench.data.decode import DecodeError, decode_audio_window, decode_video_window
from avbench.dataset_index import (
    LATENT_INDEX_FORMAT,
    check_file,
    index_path,
    latent_dir,
    latent_index_path,
    load_index,
    shard_file,
    write_latent_index,
)
from avbench.encode.config import EncodeConfig
from avbench.encode.shards import npy_bytes, read_pixel_samples
from avbench.errors import ConfigError, DataError, SourceFailure
from avbench.io import atomic_write_json, json_bytes, sha256_file, write_member_tar
from avbench.models.latent.codec import CODECS, LatentCodec, load_codec

ENCODE_VERSION = 1  # bump when the bytes written for the same inputs and codec change


@dataclass
class EncodeSummary:
    stage: StageSummary
    index_path: Path | None = None  # None until every shard of the size is encoded
    missing: list[str] = field(default_factory=list)  # shards not done yet (e.g. other partitions)

    def lines(self) -> list[str]:
        out = [self.stage.line()]
        if self.index_path:
            out.append(f"encode: index → {self.index_path}")
        elif self.missing:
            out.append(f"encode: {len(self.missing)} shard(s) still to encode (other partitions?): "
                       f"{', '.join(self.missing[:3])}; no index written yet")
        return out


# ---- the codec, loaded once per process -------------------------------------------------------------
_CODECS: dict[tuple, LatentCodec] = {}
_LOCK = threading.Lock()


def codec_for(cfg: EncodeConfig) -> LatentCodec:
    key = (cfg.vae, cfg.paths, resolve_device(cfg.device), cfg.dtype, cfg.frame_batch)
    with _LOCK:
        if key not in _CODECS:
            _CODECS[key] = load_codec(cfg.vae, cfg.paths, device=check_device(resolve_device(cfg.device)),
                                      dtype=torch_dtype(cfg.dtype), frame_batch=cfg.frame_batch)
        return _CODECS[key]


def codec_fingerprint(codec: LatentCodec, cfg: EncodeConfig) -> str:
    """What the bytes depend on besides the inputs: the codec (weights, configs) and the precision."""
    doc = {"codec": codec.describe(), "dtype": cfg.dtype, "encode_version": ENCODE_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ---- the stage ----------------------------------------------------------------------------------------


def _record_path(out: Path, split: str, stem: str) -> Path:
    return out / "done" / split / f"{stem}.json"


@dataclass(frozen=True)
class EncodeStage:
    """Stage protocol (avbench/curate/stage.py). Threads: the codec is loaded once and shared."""

    cfg: EncodeConfig
    fingerprint: str
    name: str = "encode"
    parallelism: str = "threads"

    def rows(self, root: Path) -> list[dict[str, Any]]:
        index = load_index(root)
        rows = [r for r in index["shards"] if r["size"] == self.cfg.size]
        if not rows:
            have = sorted({r["size"] for r in index["shards"]})
            raise DataError(f"{index_path(root)}: no shards at {self.cfg.size} px (have {have}); pick --size from those")
        if self.cfg.splits:
            unknown = sorted(set(self.cfg.splits) - {r["split"] for r in rows})
            if unknown:
                raise DataError(f"{index_path(root)}: no {', '.join(unknown)} shards at {self.cfg.size} px")
            rows = [r for r in rows if r["split"] in self.cfg.splits]
        return sorted(rows, key=lambda r: r["path"])

    def job_for(self, root: Path, row: dict[str, Any]) -> Job:
        stem = Path(row["path"]).stem
        out = latent_dir(root, self.cfg.vae, self.cfg.size)
        return Job(f"{self.cfg.vae}.{stem}", self.is_done(out, row), (str(root), row))

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        rows = partition.select(self.rows(Path(root)), key=lambda r: r["path"])
        return [self.job_for(Path(root), r) for r in rows]

    def is_done(self, out: Path, row: dict[str, Any]) -> bool:
        stem = Path(row["path"]).stem
        rec_path = _record_path(out, row["split"], stem)
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if rec.get("input_sha256") != row["sha256"] or rec.get("fingerprint") != self.fingerprint:
            return False
        o = rec.get("output") or {}
        return check_file(out / str(o.get("path", "")), o.get("bytes", -1), o.get("sha256", ""), "") is None

    def cleanup(self, root: Path, job: Job) -> None:
        _, row = job.arg
        out = latent_dir(root, self.cfg.vae, self.cfg.size)
        stem = Path(row["path"]).stem
        for folder in (out / row["split"], out / "done" / row["split"]):
            if folder.is_dir():
                for tmp in folder.glob(f".tmp-{stem}.*"):
                    tmp.unlink(missing_ok=True)

    def run(self, job: Job) -> dict[str, Any]:
        root, row = Path(job.arg[0]), job.arg[1]
        codec = codec_for(self.cfg)
        src = shard_file(root, row)
        if (problem := check_file(src, row["bytes"], row["sha256"], "rebuild the pixel shards (avbench shard)")):
            raise SourceFailure("permanent", problem)
        out = latent_dir(root, self.cfg.vae, self.cfg.size)
        stem = Path(row["path"]).stem
        rel = f"{row['split']}/{stem}.tar"
        source = {"path": f"shards/{row['path']}", "sha256": row["sha256"]}
        samples, clips = [], []
        for key, members in read_pixel_samples(src):
            members_out, info = encode_clip(codec, key, members, fingerprint=self.fingerprint, source=source,
                                            where=src)
            samples.append((key, members_out))
            clips.append(info)
        nbytes, digest = write_member_tar(out / rel, samples)
        record = {"input": source["path"], "input_sha256": row["sha256"], "fingerprint": self.fingerprint,
                  "output": {"path": rel, "bytes": nbytes, "sha256": digest, "samples": len(samples)},
                  "split": row["split"], "clips": clips}
        atomic_write_json(_record_path(out, row["split"], stem), record)
        return record["output"]


def encode_clip(codec: LatentCodec, key: str, members: dict[str, bytes], *, fingerprint: str, source: dict,
                where: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Encode one pixel sample into its latent members (and a one-line summary of the shapes)."""
    missing = [m for m in ("json", "mp4", "flac") if m not in members]
    if missing:
        raise SourceFailure("permanent", f"{where}: {key} has no {', '.join(missing)} member; rebuild the shard")
    meta = json.loads(members["json"])
    fps, rate = int(meta["video"]["fps"]), int(meta["audio"]["sample_rate"])
    frames = int(meta["video"]["frames"])
    samples = frames * rate // fps
    try:
        video = decode_video_window(members["mp4"], 0, frames, fps)
        audio = decode_audio_window(members["flac"], 0, samples)
    except (DecodeError, OSError, RuntimeError, ValueError) as e:
        raise SourceFailure("permanent", f"{where}: {key}: {e}") from None
    if rate != codec.audio.sample_rate:
        raise SourceFailure("permanent", f"{where}: {key} audio is {rate} Hz, the {codec.name} codec takes "
                                         f"{codec.audio.sample_rate} Hz")
    x = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 3, 1, 2))).float().div_(127.5).sub_(1.0)
    zv = codec.encode_video(x[None])[0].cpu().numpy()
    za = codec.encode_audio(torch.from_numpy(audio)[None])[0].cpu().numpy()
    for name, z in (("video", zv), ("audio", za)):
        if not np.isfinite(z).all() or np.abs(z).max() > np.finfo(np.float16).max:
            raise SourceFailure("permanent", f"{where}: {key}: the {name} latent is not finite in float16 "
                                             f"(try --dtype fp32)")
    lpf = codec.latents_per_frame(fps)
    latent = {
        "codec": codec.name, "fingerprint": fingerprint, "posterior": "mean", "dtype": "float16",
        "source_shard": source,
        "video": {"shape": list(zv.shape), "fps": fps, "frames": frames, "layout": "[F, C, h, w]"},
        "audio": {"shape": list(za.shape), "layout": "[C, T]", "rate_hz": float(codec.audio_latent_rate),
                  "samples_per_latent": codec.audio.samples_per_latent, "input_samples": samples,
                  "pad_samples": za.shape[-1] * codec.audio.samples_per_latent - samples,
                  "latents_per_frame": f"{lpf.numerator}/{lpf.denominator}", "frame_step": codec.frame_step(fps)},
    }
    out = {"audio.npy": npy_bytes(za.astype(np.float16)), "json": json_bytes({**meta, "latent": latent}),
           "video.npy": npy_bytes(zv.astype(np.float16))}
    return out, {"key": key, "frames": frames, "video": list(zv.shape), "audio": list(za.shape)}


# ---- the run and the index ----------------------------------------------------------------------------


def encode_root(cfg: EncodeConfig, *, progress: Any = None) -> EncodeSummary:
    """Encode this partition's shards, then write the index if every shard of the size is done."""
    root = cfg.root
    if cfg.vae not in CODECS:
        raise ConfigError(f"--vae {cfg.vae!r}: choose one of {', '.join(CODECS)}")
    load_index(root)  # a clear line for a root without pixel shards before loading a codec
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if resolve_device(cfg.device).startswith("cuda"):  # the same convolution algorithms on every rerun
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    codec = codec_for(cfg)  # missing weights: one CodecWeightsError before any job runs
    stage = EncodeStage(cfg, codec_fingerprint(codec, cfg))
    everything = [stage.job_for(root, r) for r in stage.rows(root)]
    if not all(j.done for j in everything):
        latent_index_path(root, cfg.vae, cfg.size).unlink(missing_ok=True)
    summary = run_stage(stage, root, cfg.partition, workers=1,
                        progress=cfg.progress if progress is None else progress)
    result = EncodeSummary(summary)
    final = [stage.job_for(root, r) for r in stage.rows(root)]
    result.missing = [j.source_id for j in final if not j.done]
    if not result.missing:
        result.index_path = write_index(stage, codec, root, [j.arg[1] for j in final])
    return result


def write_index(stage: EncodeStage, codec: LatentCodec, root: Path, rows: list[dict[str, Any]]) -> Path:
    cfg = stage.cfg
    out = latent_dir(root, cfg.vae, cfg.size)
    pixel = load_index(root)
    shard_rows, video_shape = [], None
    for row in rows:
        rec = json.loads(_record_path(out, row["split"], Path(row["path"]).stem).read_text(encoding="utf-8"))
        o = rec["output"]
        shard_rows.append({"path": o["path"], "size": cfg.size, "split": row["split"], "samples": o["samples"],
                           "bytes": o["bytes"], "sha256": o["sha256"], "source_sha256": row["sha256"]})
        video_shape = video_shape or next((c["video"][1:] for c in rec["clips"]), None)
    keep = {r["path"] for r in shard_rows}
    for stale in out.glob("*/[!.]*.tar"):  # tars of an earlier, larger pixel set would otherwise linger
        if stale.relative_to(out).as_posix() not in keep:
            stale.unlink()
    desc = codec.describe(int(pixel["fps"]))
    index = {
        "format": LATENT_INDEX_FORMAT,
        "vae": cfg.vae,
        "size": cfg.size,
        "fps": int(pixel["fps"]),
        "sample_rate": int(pixel["sample_rate"]),
        "posterior": "mean",
        "dtype": "float16",
        "fingerprint": stage.fingerprint,
        "codec": desc,
        "video_latent": {**desc["video_latent"], "shape_per_frame": video_shape},
        "audio_latent": desc["audio_latent"],
        "source": {"index": "shards/index.json", "sha256": sha256_file(index_path(root)),
                   "spec": pixel.get("spec")},
        "shards": shard_rows,
    }
    return write_latent_index(root, cfg.vae, cfg.size, index)
