"""`avbench sample v2a`: MMAudio audio for existing videos, written in the `avbench sample` layout.

Layout of OUT (as `avbench sample`, so `avbench eval` reads it unchanged):
    video/<i>.mp4   the source frames of the generated stretch (re-encoded by `avbench.media`, H.264) with
                    the new audio (AAC, mono, 16 kHz)
    audio/<i>.wav   the new audio at 16 kHz mono 16-bit (resampled from the model's rate with soxr)
    samples.json    model, weights and their checksums, sampler, seed, steps, CFG, conditioning rates,
                    durations and the source clip per sample; rewritten after every clip
Sample i uses clip i (clips reused in order when --num-samples exceeds them) and seed + i. A rerun with
the same settings resumes (`pipeline.load_previous`, the rule every sample command shares).

Duration: MMAudio was trained on 8 s clips and shorter ones work with some loss of quality, while the
benchmark scores 1.6 s windows from frame 0. The default generates each clip's own length capped at 8 s,
so a long clip gets the trained duration and a short one its whole length (the metrics then read its first
1.6 s); `--duration` fixes one length for every clip (it must fit the shortest clip).

The MMAudio options (`--audio-model`, weight files, `--audio-steps`, `--cfg-strength`, `--audio-dtype`,
`--device`) are `MMAudioOptions`, shared with `avbench sample text2av`. `--device auto` (the default, as for
train and encode) is the GPU where there is one.
"""

from __future__ import annotations

import io
import math
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avbench import dataset_index
from avbench.curate.audiotrack import SOXR_QUALITY
from avbench.curate.hold import hold_indices, uniform_times
from avbench.errors import MissingInputError, SampleError
from avbench.io import atomic_write_json, sha256_bytes
from avbench.sample.mmaudio import (
    METRICS_RATE,
    TRAINED_DURATION_S,
    MMAudioOptions,
    generate_audio,
    resample_audio,
    write_clip,
)
from avbench.sample.pipeline import document_head, load_previous

FALLBACK_FPS = 10  # output rate for a source whose frame rate is not a whole number
_NOT_IDENTITY = ("out", "num_samples", "progress")


@dataclass(kw_only=True)
class V2AConfig(MMAudioOptions):
    """`avbench sample v2a`: the MMAudio options (inherited, shared with text2av) and the clips to score."""

    # metadata["help"] is the help of the generated `avbench sample v2a` option
    videos: str = field(metadata={
        "help": "ROOT:split (the split's clips of a built dataset, largest size; ROOT:split:size for another) "
                "or a folder of .mp4 files."})
    out: Path = field(metadata={"help": "Output folder: video/<i>.mp4, audio/<i>.wav, samples.json."})
    prompt: str = field(default="", metadata={"help": "Text condition for every clip (MMAudio's demo default: empty)."})
    duration: float | None = field(default=None, metadata={
        "help": f"Seconds of audio per clip. Default: the clip's own length capped at {TRAINED_DURATION_S:g} s "
                "(MMAudio's trained duration; the benchmark scores the first 1.6 s)."})
    seed: int = field(default=0, metadata={"help": "Sample i uses seed + i; the same seed gives the same files."})
    num_samples: int | None = field(default=None, metadata={
        "help": "How many samples. Default: one per clip.", "min": 1})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def validate(self) -> None:
        super().validate()
        if self.num_samples is not None and self.num_samples < 1:
            raise SampleError(f"--num-samples {self.num_samples}: at least 1")
        if self.duration is not None and self.duration <= 0:
            raise SampleError(f"--duration {self.duration:g}: must be positive")


# ---- source clips ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceClip:
    name: str  # the clip key (dataset) or file name (folder)
    read: Any  # () -> bytes | str: what PyAV opens


def list_clips(videos: str) -> tuple[list[SourceClip], dict[str, Any]]:
    """The clips of `--videos` in a fixed order, and a description of the source for samples.json."""
    path = Path(videos)
    if path.is_dir() and not dataset_index.index_path(path).is_file():
        files = sorted(p for p in path.glob("*.mp4") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise MissingInputError(f"{path}: no .mp4 files; pass a folder of clips or ROOT:split of a built dataset")
        return [SourceClip(p.name, lambda p=p: str(p)) for p in files], {"kind": "mp4", "path": str(path)}
    root, _, rest = videos.partition(":")
    split, _, size = rest.partition(":")
    if not split:
        raise MissingInputError(f"{videos}: neither a folder of .mp4 files nor ROOT:split of a built dataset")
    index = dataset_index.load_index(root)
    rows = [r for r in index["shards"] if r["split"] == split]
    sizes = sorted({int(r["size"]) for r in rows})
    if not sizes:
        raise MissingInputError(f"{dataset_index.index_path(root)}: no shards for split {split!r}; use one of "
                                f"{sorted({r['split'] for r in index['shards']})}")
    chosen = int(size) if size else sizes[-1]
    if chosen not in sizes:
        raise MissingInputError(f"{videos}: split {split} has sizes {sizes}, not {chosen}")
    clips = []
    for row in sorted((r for r in rows if int(r["size"]) == chosen), key=lambda r: r["path"]):
        tar_path = dataset_index.shard_file(root, row)
        with tarfile.open(tar_path) as tar:
            members = sorted(m.name for m in tar.getmembers() if m.isfile() and m.name.endswith(".mp4"))
        clips += [SourceClip(m.removesuffix(".mp4"), lambda t=tar_path, m=m: _tar_member(t, m)) for m in members]
    desc = {"kind": "dataset", "path": root, "split": split, "size": chosen,
            "index_sha256": sha256_bytes(dataset_index.index_path(root).read_bytes()),
            "dataset_spec_hash": (index.get("spec") or {}).get("hash")}
    return clips, desc


def _tar_member(tar_path: Path, name: str) -> bytes:
    with tarfile.open(tar_path) as tar:
        return tar.extractfile(name).read()


def read_frames(clip: SourceClip, max_seconds: float) -> tuple[np.ndarray, float]:
    """uint8 RGB frames [T, H, W, 3] of the clip's first `max_seconds` (all of them if shorter) and its fps."""
    import av

    data = clip.read()
    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if fps <= 0:
                raise SampleError(f"{clip.name}: the video stream has no frame rate; re-encode it at a constant rate")
            limit = math.ceil(max_seconds * fps - 1e-6)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= limit:
                    break
    except av.FFmpegError as exc:
        raise SampleError(f"{clip.name}: unreadable video ({exc}); pass mp4 clips") from None
    if not frames:
        raise SampleError(f"{clip.name}: no video frames")
    return np.stack(frames), fps


# ---- the run ------------------------------------------------------------------------------------------

def _output_video(frames: np.ndarray, fps: float, duration: float) -> tuple[np.ndarray, int, str | None]:
    """The source frames covering `duration`, at the source rate when it is whole, else held at 10 fps."""
    if abs(fps - round(fps)) < 1e-3:
        n = max(1, int(duration * fps + 1e-6))  # whole frames inside the generated stretch
        return frames[:n], round(fps), None
    n = max(1, int(duration * FALLBACK_FPS + 1e-6))
    idx = hold_indices(uniform_times(len(frames), fps), FALLBACK_FPS, n)
    return frames[idx], FALLBACK_FPS, f"{fps:g} fps is not a whole rate; video written at {FALLBACK_FPS} fps (held)"


def _identity(cfg: V2AConfig, bundle, source: dict[str, Any], clips: list[SourceClip]) -> dict[str, Any]:
    d = cfg.identity(bundle, skip=_NOT_IDENTITY)
    d["source"] = {k: v for k, v in source.items() if k != "path"}
    d["clips"] = [c.name for c in clips]
    return d


def _document(cfg, bundle, source, identity, rows, notes, complete) -> dict[str, Any]:
    return {
        **document_head("v2a", identity, {**cfg.to_dict(), "audio_dtype": cfg.resolved_audio_dtype()}, complete),
        "model": bundle.describe(),
        "sampler": cfg.sampler_record(),
        "conditioning": {"mode": "video-to-audio", "source": source, "prompt": cfg.prompt,
                         "negative_prompt": cfg.negative_prompt,
                         "frame_rule": "sample-and-hold (avbench.curate.hold)", "clip_fps": 8, "sync_fps": 25,
                         "clip_size": bundle.clip.config.image_size, "sync_size": bundle.synchformer.config.image_size},
        "video": {"codec": "h264+aac", "frames": "the source frames of the generated stretch"},
        "audio": {"sample_rate": METRICS_RATE, "model_sample_rate": bundle.sample_rate, "format": "wav pcm16",
                  "resampler": None if bundle.sample_rate == METRICS_RATE else f"soxr {SOXR_QUALITY}"},
        "notes": notes,
        "samples": [rows[i] for i in sorted(rows)],
    }


def run_v2a(cfg: V2AConfig) -> dict[str, Any]:
    """Generate audio for the clips of `cfg.videos` into `cfg.out`; returns the samples.json document."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg.validate()
    clips, source = list_clips(cfg.videos)
    bundle = cfg.load_mmaudio()
    if bundle.variant.test_only:
        print(f"NOTE: {cfg.audio_model} is a test-only variant with random weights", file=sys.stderr)
    out = Path(cfg.out)
    identity = _identity(cfg, bundle, source, clips)
    rows = load_previous(out, identity)
    notes: list[str] = []
    total = cfg.num_samples or len(clips)
    pending = [i for i in range(total) if i not in rows]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not cfg.progress, transient=True) as progress:
        task = progress.add_task("clips", total=len(pending))
        steps_task = progress.add_task("steps", total=cfg.audio_steps)
        for i in pending:
            clip = clips[i % len(clips)]
            frames, fps = read_frames(clip, cfg.duration or TRAINED_DURATION_S)
            duration = cfg.duration or min(len(frames) / fps, TRAINED_DURATION_S)
            progress.reset(steps_task)
            try:
                wave, rate, info = generate_audio(bundle, frames, fps, cfg.prompt, duration, cfg.seed + i,
                                                  cfg.audio_steps, cfg.cfg_strength, negative_prompt=cfg.negative_prompt,
                                                  callback=lambda k, n: progress.update(steps_task, completed=k))
            except SampleError as exc:
                raise SampleError(f"{clip.name}: {exc}") from None
            video, out_fps, note = _output_video(frames, fps, duration)
            if note and f"{clip.name}: {note}" not in notes:
                notes.append(f"{clip.name}: {note}")
            pcm, _ = resample_audio(wave, rate, round(len(video) / out_fps * METRICS_RATE))
            rel = write_clip(out, i, video, pcm, out_fps, METRICS_RATE)
            rows[i] = {"index": i, "seed": cfg.seed + i, **rel, "condition": clip.name,
                       "prompt": cfg.prompt or None, "duration_s": duration, "fps": out_fps, "frames": len(video),
                       "source_fps": fps, "model_samples": info["generated_samples"],
                       "sequence_lengths": info["sequence_lengths"],
                       "clip_frames": {k: info["clip_frames"][k] for k in ("fps", "count", "size")},
                       "sync_frames": {k: info["sync_frames"][k] for k in ("fps", "count", "size")}}
            atomic_write_json(out / "samples.json", _document(cfg, bundle, source, identity, rows, notes, False))
            progress.update(task, advance=1)
    doc = _document(cfg, bundle, source, identity, rows, notes, True)
    atomic_write_json(out / "samples.json", doc)
    return doc
