"""`avbench resample`: one streaming decode pass per source → aligned 10 fps clips and 16 kHz mono audio.

Timeline: t = 0 is the video stream's `start_time` (the first frame); every decoded timestamp of either
stream is placed on it with its own stream's time base (`t = pts · time_base − video start`). So an
audio stream that starts later than the video (or an edit list that shifts it) keeps its true place;
the part of a clip before the audio starts (or after it ends) is digital silence, and recorded.

Alignment contract, for a clip `[start, end)` with F = floor((end − start) · fps) frames:
- video frame k shows the source at `start + k/fps`: the latest source frame whose timestamp is ≤ that
  time (sample-and-hold on the source's own timestamps, so variable frame rate is exact; the predicate is
  `hold.shows`, which generated and conditioning frames share);
- audio samples `[spf·k, spf·(k+1))` (spf = sample_rate / fps = 1600) cover that frame's 0.1 s; the clip
  audio has exactly spf · F samples.

Audio: channels are downmixed to mono with the standard ITU-R BS.775 weights (LFE dropped; see
`audiotrack.py`) at the source rate, then resampled with a soxr stream (quality "VHQ",
delay-compensated) onto a grid that contains t = 0: the stream is padded at the front so that its
first sample sits on a common multiple of both sample periods. The pass starts at
the beginning of the file and never seeks, so AAC pre-roll after a seek cannot occur; AAC priming and
decoder padding are handled by trusting each frame's pts and cutting clips by sample index.

Pictures: only the source frames that some output frame shows are converted, each once, straight from
the decoder's pixel format to the output sizes (`pictures.Shrinker`: libswscale crop + area scale, clip
format 2); they are turned upright when the stream carries a display matrix (phones store portrait
video as landscape plus a rotation); the rotation applied is recorded.

Each clip is written as `<key>.<size>.mp4` (video only, `avbench.media`'s reproducible H.264) and
`<key>.flac` (16-bit) as soon as its pictures and its audio are complete (or its audio is known to be
missing: past the audio stream's end), so memory holds only the clips in progress; `clips.json` is
written last and marks the source complete. Clips that fail a quality filter are kept, with
`keep: false` and `reasons`.

Damage: a packet that does not decode stops the source at that point instead of failing it. The clips
that end before the damage are kept, and `clips.json` says `"status": "partial"` with `damage_at_s`
(the last picture decoded cleanly before the error, or the damaged audio packet's time); the shard
stage shards the kept clips. With no clip before the damage the source fails.

(Over 400 lines on purpose: the one streaming pass keeps pictures, audio, damage and memory bounds in
one loop's state; split into modules, that state would have to travel between them.)
"""

from __future__ import annotations

import importlib.metadata as md
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avbench.curate.audiotrack import SOXR_QUALITY, AudioTrack
from avbench.curate.filters import evaluate_filters
from avbench.curate.hold import EPS, shows
from avbench.curate.partition import Partition
from avbench.curate.pictures import SCALER, Shrinker, display_rotation
from avbench.curate.records import ready_sources
from avbench.curate.scenes import scenes_path
from avbench.curate.spec import DatasetSpec, Filters, OutputFormat
from avbench.curate.stage import Job, StageSummary, failure_path, run_stage, source_label
from avbench.errors import SourceFailure
from avbench.io import atomic_write_json
from avbench.media import H264, write_flac, write_mp4

AUDIO_END_SLACK_S = 1.0  # how far a stream's decoded end may fall short of its declared end
# Clip FLACs have been quantised with 32767 as full scale since the first shard format; another scale
# would change every shard's bytes for a 0.0003 dB difference.
FLAC_FULL_SCALE = 32767.0
# The pixels' recipe, in every clips.json and so in every shard sample's "processing": 1 = full-size
# RGB shrunk by OpenCV INTER_AREA; 2 = cropped and scaled by libswscale in the decoder's pixel format
# (pictures.SCALER). Bump it whenever the same source would give other pixels.
CLIP_FORMAT = 2


@dataclass(frozen=True)
class ResampleConfig:
    """Options of `avbench resample`."""

    # metadata["help"] is the help of the generated `avbench resample` option
    workers: int = field(default=0, metadata={
        "help": "Parallel worker processes (0 = one per core), one encoder thread each.", "min": 0})
    partition: Partition = field(default=Partition(0, 1), metadata={
        "help": "Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."})
    decoder_threads: int = field(default=1, metadata={
        "help": "Decoder threads per source (0 = FFmpeg's choice); pixels do not depend on it. 1 spends the "
                "least CPU per source-hour when every core runs a worker; more shorten one source's wall time.",
        "min": 0})
    progress: Any = field(default=True, metadata={"help": "Show a progress bar."})


def clips_dir(root: Path, source_id: str) -> Path:
    return Path(root) / "clips" / source_id


def clip_key(source_id: str, start_s: float) -> str:
    return f"{source_id}_{int(round(start_s * 1000)):08d}"


def h264_settings(out: OutputFormat) -> H264:
    return H264(crf=out.crf, preset=out.preset, gop=out.gop)


@dataclass
class _Clip:
    index: int
    key: str
    start: float
    end: float
    scene_index: int
    frames: int
    video: dict[int, np.ndarray] | None = None  # size → uint8 [F, S, S, 3], filled during the pass
    filled: int = 0


# ---- the pass ----------------------------------------------------------------------------------------


def plan_clips(source_id: str, spans: list[tuple[float, float, int]], fps: int) -> list[_Clip]:
    clips = []
    for i, (start, end, scene) in enumerate(sorted(spans)):
        frames = int(math.floor((end - start) * fps + EPS))
        if frames >= 1:
            clips.append(_Clip(i, clip_key(source_id, start), float(start), float(end), int(scene), frames))
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        raise SourceFailure("permanent", f"{source_id}: two clips start in the same millisecond; "
                            f"check scenes/{source_id}.parquet")
    return clips


def resample_file(path: str | Path, source_id: str, spans: list[tuple[float, float, int]], out_dir: Path,
                  output: OutputFormat, filters: Filters, label: str | None = None,
                  decoder_threads: int = 1) -> dict[str, Any]:
    """Decode `path` once and write every clip of `spans` to `out_dir`; returns what clips.json records
    about the pass (the caller writes clips.json)."""
    import av

    label = label or str(path)
    fps, sr = output.fps, output.sample_rate
    spf, rem = divmod(sr, fps)
    if rem:
        raise SourceFailure("permanent", f"[output] sample_rate {sr} is not a multiple of fps {fps}; fix the spec")
    sizes = sorted(output.sizes)
    clips = plan_clips(source_id, spans, fps)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(c, k, c.start + k / fps) for c in clips for k in range(c.frames)]
    ti = 0  # next target to fill
    audio = AudioTrack(sr)
    written: list[dict[str, Any]] = []
    pending: list[_Clip] = []  # clips whose frames are complete, waiting for their audio
    prev = None  # (time, av.VideoFrame, serial number) of the latest decoded frame
    serial = 0
    cache: tuple[int, dict[int, np.ndarray]] | None = None
    rotations: set[int] = set()
    decode_errors = 0
    damage_at: float | None = None  # clips must end by then (the last clean picture / damaged audio)
    last_t = None
    audio_declared_end: float | None = None

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise SourceFailure("permanent", f"{label}: cannot be opened ({e.strerror or e}); "
                            "the file is damaged, re-download (or replace) it") from None

    shrinkers = {s: Shrinker(s, output.resize) for s in sizes}

    def pictures(frame_id: int, frame) -> dict[int, np.ndarray]:
        """Only frames that some output frame shows get here (sample-and-hold picks one source frame
        per output frame), each converted once however many output frames hold it."""
        nonlocal cache
        if cache is None or cache[0] != frame_id:
            rotation = display_rotation(frame)
            rotations.add(rotation)
            cache = (frame_id, {s: shrink(frame, rotation) for s, shrink in shrinkers.items()})
        return cache[1]

    def fill_until(t_next: float | None) -> None:
        """Emit `prev` for every target before the next frame's time (all remaining ones at the end)."""
        nonlocal ti
        while ti < len(targets) and prev is not None and (t_next is None or not shows(t_next, targets[ti][2])):
            clip, k, _ = targets[ti]
            if damage_at is not None and clip.end > damage_at + EPS:
                clip.video = None  # after the damage: this clip is not kept, nor are its pictures
                ti += 1
                continue
            if clip.video is None:
                clip.video = {s: np.empty((clip.frames, s, s, 3), np.uint8) for s in sizes}
            for s, img in pictures(prev[2], prev[1]).items():
                clip.video[s][k] = img
            clip.filled = k + 1
            if clip.filled == clip.frames:
                pending.append(clip)
            ti += 1

    def audio_over(clip: _Clip) -> bool:
        """The clip lies past the audio stream's declared end, and the stream has reached it: no more
        audio will come for it, so waiting would only hold its pictures in memory."""
        if audio_declared_end is None or audio.origin is None:
            return False
        decoded_end = float(audio.origin) + audio.next_in / max(audio.in_rate, 1)
        return decoded_end >= audio_declared_end - 0.1 and clip.start >= audio_declared_end + AUDIO_END_SLACK_S

    def flush(final: bool) -> None:
        for clip in list(pending):
            if damage_at is not None and clip.end > damage_at + EPS:
                pending.remove(clip)  # completed from pictures decoded after the damage
                clip.video = None
            elif final or audio.available_until(clip.end) or audio_over(clip):
                pending.remove(clip)
                written.append(_write_clip(clip, audio, out_dir, output, filters, spf))
                clip.video = None
        # keep only the audio that a clip still to be written needs (bounded memory)
        starts = [c.start for c in pending] + ([targets[ti][0].start] if ti < len(targets) else [])
        audio.drop_before(min(starts) if starts else float("inf"))

    with container:
        if not container.streams.video or not container.streams.audio:
            raise SourceFailure("permanent", f"{label}: needs one video and one audio stream; "
                                "re-download it with audio or drop it")
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        as_.codec_context.thread_count = 1
        if decoder_threads == 1:
            vs.codec_context.thread_count = 1
        else:
            # H.264 frame threading is bit-exact (test_curate_resample_speed checks the clips' bytes)
            vs.thread_type = "AUTO"
            vs.codec_context.thread_count = decoder_threads
        v0 = Fraction(vs.start_time or 0) * vs.time_base
        audio_declared_end = _declared_end(as_, container, v0)
        for packet in container.demux(vs, as_):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                decode_errors += 1
                if packet.stream is vs or packet.pts is None:
                    # pictures already out decoded cleanly; any later one may refer to the lost data
                    at = float(last_t) if last_t is not None else 0.0
                else:
                    at = float(packet.pts * packet.time_base - v0)
                damage_at = at if damage_at is None else min(damage_at, at)
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                t = Fraction(frame.pts) * frame.time_base - v0
                if packet.stream is vs:
                    if last_t is not None and t <= last_t:
                        continue  # a broken file's out-of-order frame: keep the timeline monotonic
                    fill_until(float(t))
                    serial += 1
                    prev, last_t = (float(t), frame, serial), t
                else:
                    audio.push(frame, t)
            flush(final=False)
            if damage_at is not None and not pending and (ti >= len(targets) or targets[ti][0].start >= damage_at):
                break  # everything before the damage is written; the rest is not kept
        audio.finish()
        video_end = _declared_end(vs, container, v0)

    if last_t is None:
        raise SourceFailure("permanent", f"{label}: no video frame could be decoded; "
                            "re-download (or replace) the source")
    if damage_at is None:
        if video_end is not None and float(last_t) < video_end - 1.0:
            raise SourceFailure("permanent", f"{label}: truncated, video decodes to {float(last_t):.2f} s of "
                                f"{video_end:.2f} s declared; re-download (or replace) the source")
        if audio.started_at is None:
            raise SourceFailure("permanent", f"{label}: the audio stream has no decodable samples; "
                                "re-download it with audio")
        decoded_audio_end = float(audio.origin) + audio.next_in / max(audio.in_rate, 1)
        if audio_declared_end is not None and decoded_audio_end < audio_declared_end - AUDIO_END_SLACK_S:
            raise SourceFailure("permanent", f"{label}: truncated, audio decodes to {decoded_audio_end:.2f} s of "
                                f"{audio_declared_end:.2f} s declared; re-download (or replace) the source")
        # Targets past the last frame (within the last frame's duration) hold the last frame.
        fill_until(None)
    flush(final=True)
    if damage_at is not None and not written:
        raise SourceFailure("permanent", f"{label}: corrupt data, {decode_errors} packet(s) could not be decoded "
                            f"(first near t={damage_at:.2f} s) and no clip ends before it; "
                            "re-download (or replace) the source")
    return {"clips": sorted(written, key=lambda c: c["clip_index"]), "video_start_s": float(v0),
            "audio_start_s": audio.started_at, "audio_gaps": audio.gaps,
            "status": "partial" if damage_at is not None else "complete",
            "damage_at_s": round(damage_at, 6) if damage_at is not None else None,
            "decode_errors": decode_errors, "rotation_deg": max(rotations) if rotations else 0}


def _declared_end(stream, container, v0: Fraction) -> float | None:
    if stream.duration:
        return float(Fraction(stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base - v0)
    if container.duration:
        return container.duration / 1e6 - float(v0)
    return None


def _write_clip(clip: _Clip, audio: AudioTrack, out_dir: Path, output: OutputFormat, filters: Filters,
                spf: int) -> dict[str, Any]:
    samples, zero_filled = audio.take(clip.start, clip.frames * spf)
    smallest = min(clip.video)
    verdict = evaluate_filters(clip.video[smallest], samples, spf, filters)
    files = {}
    for size, frames in sorted(clip.video.items()):
        name = f"{clip.key}.{size}.mp4"
        write_mp4(out_dir / name, frames, None, output.fps, settings=h264_settings(output))
        files[str(size)] = name
    flac = f"{clip.key}.flac"
    write_flac(out_dir / flac, samples, output.sample_rate, FLAC_FULL_SCALE)
    return {
        "key": clip.key, "clip_index": clip.index, "scene_index": clip.scene_index,
        "start": clip.start, "end": clip.end, "start_ms": int(round(clip.start * 1000)),
        "frames": clip.frames, "samples": int(len(samples)), "fps": output.fps,
        "sample_rate": output.sample_rate, "video": files, "audio": flac,
        "audio_zero_filled_samples": int(zero_filled),
        **verdict,
    }


# ---- the stage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    source_id: str
    path: Path
    label: str
    scenes: Path
    out_dir: Path
    output: OutputFormat
    filters: Filters
    sha256: str | None
    decoder_threads: int = 1


def _resample_one(job: _Job) -> dict[str, Any]:
    import av
    import pandas as pd

    if not job.scenes.exists():
        raise SourceFailure("permanent", f"{job.source_id}: no clip table {job.scenes}; run `avbench scene-cut` "
                            f"first (see failures/scene-cut/{job.source_id}.json if it failed there)")
    table = pd.read_parquet(job.scenes)
    spans = list(zip(table["start"].astype(float), table["end"].astype(float), table["scene_index"].astype(int)))
    result = resample_file(job.path, job.source_id, spans, job.out_dir, job.output, job.filters, job.label,
                           job.decoder_threads)
    meta = {
        "source_id": job.source_id, "source_sha256": job.sha256,
        "status": result["status"], "damage_at_s": result["damage_at_s"], "decode_errors": result["decode_errors"],
        "clip_format": CLIP_FORMAT,
        "timeline": "t = 0 at the video stream's start_time; each stream placed by its own pts",
        "video_start_s": result["video_start_s"], "audio_start_s": result["audio_start_s"],
        "audio_gaps": result["audio_gaps"], "rotation_deg": result["rotation_deg"],
        "resample": {
            "video": "sample-and-hold: frame k = latest source frame with timestamp <= start + k/fps",
            "audio": f"ITU-R BS.775 downmix to mono (LFE dropped) at the source rate, then soxr {SOXR_QUALITY} "
                     f"to {job.output.sample_rate} Hz",
            "soxr_quality": SOXR_QUALITY, "resize": job.output.resize, "resize_filter": SCALER,
        },
        "encoder": {**h264_settings(job.output).describe(), "audio": "flac s16"},
        "fps": job.output.fps, "sample_rate": job.output.sample_rate, "sizes": sorted(job.output.sizes),
        "filters_config": asdict(job.filters),
        "versions": _versions(av),
        "clips": result["clips"],
    }
    atomic_write_json(job.out_dir / "clips.json", meta)
    kept = [c for c in result["clips"] if c["keep"]]
    seconds = sum(c["frames"] for c in kept) / job.output.fps
    return {"clips": len(result["clips"]), "kept": len(kept), "seconds": seconds, "status": result["status"]}


def _versions(av) -> dict[str, str | None]:
    import soxr

    try:
        opencv = md.version("opencv-python-headless")
    except md.PackageNotFoundError:
        opencv = None
    return {"av": av.__version__, "soxr": soxr.__version__, "numpy": np.__version__, "opencv": opencv,
            **{k: ".".join(map(str, v)) for k, v in sorted(av.library_versions.items())}}


@dataclass(frozen=True)
class ResampleStage:
    """The resample stage (Stage protocol): one job per ready source, done when clips.json exists."""

    output: OutputFormat
    filters: Filters
    decoder_threads: int = 1
    name: str = "resample"
    parallelism: str = "processes"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        root = Path(root)
        out = []
        for rec in ready_sources(root, partition):
            sid = rec["source_id"]
            clip_dir = clips_dir(root, sid)
            upstream = not scenes_path(root, sid).exists() and failure_path(root, "scene-cut", sid).exists()
            arg = _Job(sid, root / rec["path"], source_label(rec), scenes_path(root, sid), clip_dir,
                       self.output, self.filters, rec.get("sha256"), self.decoder_threads)
            out.append(Job(sid, (clip_dir / "clips.json").exists(), arg, upstream_failed=upstream))
        return out

    def run(self, job: Job) -> dict[str, Any]:
        return _resample_one(job.arg)

    def cleanup(self, root: Path, job: Job) -> None:
        """atomic_path's temp files (`.tmp-*`) that a kill during the job left in its clip folder."""
        clip_dir = clips_dir(root, job.source_id)
        if clip_dir.is_dir():
            for tmp in clip_dir.glob(".tmp-*"):
                tmp.unlink(missing_ok=True)


def resample_stage(spec: DatasetSpec, decoder_threads: int = 1) -> ResampleStage:
    return ResampleStage(spec.output, spec.filters, decoder_threads)


def resample_sources(spec: DatasetSpec, root: str | Path, cfg: ResampleConfig = ResampleConfig(),
                     progress: Any = None) -> StageSummary:
    """Resample every ready source of this partition that has a clip table (resumable per source)."""
    return run_stage(resample_stage(spec, cfg.decoder_threads), Path(root), cfg.partition, workers=cfg.workers,
                     progress=cfg.progress if progress is None else progress)
