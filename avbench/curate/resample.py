"""`avbench resample`: one streaming decode pass per source → aligned 10 fps clips and 16 kHz mono audio.

Timeline: t = 0 is the video stream's `start_time` (the first frame); every decoded timestamp of either
stream is placed on it with its own stream's time base (`t = pts · time_base − video start`). So an
audio stream that starts later than the video (or an edit list that shifts it) keeps its true place;
the part of a clip before the audio starts (or after it ends) is digital silence, and recorded.

Alignment contract, for a clip `[start, end)` with F = floor((end − start) · fps) frames:
- video frame k shows the source at `start + k/fps`: the latest source frame whose timestamp is ≤ that
  time (sample-and-hold on the source's own timestamps, so variable frame rate is exact);
- audio samples `[spf·k, spf·(k+1))` (spf = sample_rate / fps = 1600) cover that frame's 0.1 s; the clip
  audio has exactly spf · F samples.

Audio: channels are averaged (not the left channel) at the source rate, then resampled with a soxr
stream (quality "VHQ", delay-compensated) onto a grid that contains t = 0: the stream is padded at the
front so that its first sample sits on a common multiple of both sample periods. The pass starts at
the beginning of the file and never seeks, so AAC pre-roll after a seek cannot occur; AAC priming and
decoder padding are handled by trusting each frame's pts and cutting clips by sample index.

Each clip is written as `<key>.<size>.mp4` (video only, libx264 with one thread and fixed options, so
the bytes are reproducible) and `<key>.flac` (16-bit); `clips.json` is written last and marks the
source complete. Clips that fail a quality filter are kept, with `keep: false` and `reasons`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avbench.curate.avframes import yuv420_frame
from avbench.curate.filters import evaluate_filters
from avbench.curate.partition import Partition
from avbench.curate.spec import DatasetSpec, Filters, OutputFormat
from avbench.curate.stage import SourceError, StageSummary, run_stage
from avbench.io import atomic_path, atomic_write_json

SOXR_QUALITY = "VHQ"
# mbtree off: with it, libx264 (core 165) gave different bytes for the same small (32/64 px) pictures
# from run to run, single-threaded, depending on what was in freed heap memory (an uninitialised read).
X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0"
EPS = 1e-6  # seconds: timestamps are exact fractions, targets are floats


@dataclass(frozen=True)
class ResampleConfig:
    """Options of `avbench resample`."""

    workers: int = 0  # 0 = one per core; each worker encodes with one thread
    partition: Partition = Partition(0, 1)
    progress: Any = True


def clips_dir(root: Path, source_id: str) -> Path:
    return Path(root) / "clips" / source_id


def clip_key(source_id: str, start_s: float) -> str:
    return f"{source_id}_{int(round(start_s * 1000)):08d}"


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


# ---- pictures ----------------------------------------------------------------------------------------


def fit_square(img: np.ndarray, size: int, mode: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] → [size, size, 3] by centre crop or letterbox (black bars), area resampling."""
    import cv2

    h, w = img.shape[:2]
    if mode == "center-crop":
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return cv2.resize(img[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


# ---- sound -------------------------------------------------------------------------------------------


def frame_to_mono(frame) -> np.ndarray:
    """An av.AudioFrame → float32 mono (mean of the channels), full scale = 1.0."""
    x = frame.to_ndarray()
    fmt = frame.format.name
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        x = x.reshape(-1, channels).T
    if fmt.startswith("s16"):
        x = x.astype(np.float32) / 32768.0
    elif fmt.startswith("s32"):
        x = x.astype(np.float32) / 2147483648.0
    elif fmt.startswith("u8"):
        x = (x.astype(np.float32) - 128.0) / 128.0
    else:
        x = x.astype(np.float32)
    return x.mean(axis=0, dtype=np.float32)


class _AudioTrack:
    """Streams decoded audio into 16 kHz mono samples indexed on the shared timeline."""

    def __init__(self, out_rate: int):
        self.out_rate = out_rate
        self.resampler = None
        self.origin: Fraction | None = None  # timeline time of output sample 0 (and input sample 0)
        self.in_rate = 0
        self.next_in = 0  # input samples fed so far (including front padding and gap fill)
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # output index of buf[0]
        self.started_at: float | None = None
        self.gaps = 0

    def push(self, frame, t: Fraction) -> None:
        import soxr

        mono = frame_to_mono(frame)
        if self.resampler is None:
            self.in_rate = frame.sample_rate
            grid = Fraction(1, math.gcd(self.in_rate, self.out_rate))
            self.origin = math.floor(t / grid) * grid
            self.started_at = float(t)
            self.resampler = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=SOXR_QUALITY)
        at = round((t - self.origin) * self.in_rate)
        # Containers with coarse time bases (Matroska/WebM and FLV: 1 ms) round every frame's pts, e.g.
        # 1024 samples at 44.1 kHz are 23.22 ms; a deviation within one time-base unit is that rounding,
        # not a gap or an overlap, so the frame follows on (the next pts corrects any drift).
        tol = math.ceil(Fraction(frame.time_base) * self.in_rate) if frame.time_base else 0
        if self.next_in > 0 and abs(at - self.next_in) <= tol:
            at = self.next_in
        if at > self.next_in:  # a gap in the stream (or the front padding): silence
            if self.next_in > 0:
                self.gaps += 1
            self._feed(np.zeros(at - self.next_in, np.float32))
        elif at < self.next_in:  # overlap: keep what was already placed
            mono = mono[self.next_in - at :]
        self._feed(mono)

    def _feed(self, x: np.ndarray, last: bool = False) -> None:
        if self.resampler is None:
            return
        self.next_in += len(x)
        y = self.resampler.resample_chunk(x, last=last)
        if len(y):
            self.buf = np.concatenate([self.buf, y])

    def finish(self) -> None:
        self._feed(np.zeros(0, np.float32), last=True)

    @property
    def end_index(self) -> int:
        return self.buf_start + len(self.buf)

    def index_of(self, t: float) -> int:
        return round((Fraction(t) - self.origin) * self.out_rate) if self.origin is not None else 0

    def available_until(self, t_end: float) -> bool:
        return self.resampler is not None and self.end_index >= self.index_of(t_end)

    def take(self, start: float, n: int) -> tuple[np.ndarray, int]:
        """n samples from time `start`; zeros where the stream has no audio (before its first sample or
        after its last). Returns (samples, how many of them lie outside the stream)."""
        out = np.zeros(n, np.float32)
        if self.resampler is None:
            return out, n
        j0 = self.index_of(start)
        a, b = max(j0, self.buf_start), min(j0 + n, self.end_index)
        if b > a:
            out[a - j0 : b - j0] = self.buf[a - self.buf_start : b - self.buf_start]
        real_a = self.index_of(self.started_at)
        real_b = round(Fraction(self.next_in * self.out_rate, self.in_rate))
        inside = max(0, min(j0 + n, real_b) - max(j0, real_a))
        return out, n - inside

    def drop_before(self, t: float) -> None:
        if self.resampler is None:
            return
        j = self.end_index if t == float("inf") else self.index_of(t)
        if j > self.buf_start:
            cut = min(j - self.buf_start, len(self.buf))
            self.buf = self.buf[cut:]
            self.buf_start += cut


# ---- writing -----------------------------------------------------------------------------------------


def encode_video(path: Path, frames: np.ndarray, fps: int, out: OutputFormat) -> None:
    """Video-only H.264 mp4, one encoder thread and fixed options (reproducible bytes)."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            s = container.add_stream("libx264", rate=fps, options={
                "crf": str(out.crf), "preset": out.preset, "g": str(out.gop), "threads": "1",
                "x264-params": X264_PARAMS})
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            s.codec_context.thread_count = 1
            for k, img in enumerate(frames):
                frame = yuv420_frame(img)
                frame.pts = k
                container.mux(s.encode(frame))
            container.mux(s.encode(None))


def encode_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate, format="FLAC", subtype="PCM_16")


# ---- the pass ----------------------------------------------------------------------------------------


def plan_clips(source_id: str, spans: list[tuple[float, float, int]], fps: int) -> list[_Clip]:
    clips = []
    for i, (start, end, scene) in enumerate(sorted(spans)):
        frames = int(math.floor((end - start) * fps + EPS))
        if frames >= 1:
            clips.append(_Clip(i, clip_key(source_id, start), float(start), float(end), int(scene), frames))
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        raise SourceError(f"{source_id}: two clips start in the same millisecond; check scenes/{source_id}.parquet")
    return clips


def resample_file(path: str | Path, source_id: str, spans: list[tuple[float, float, int]], out_dir: Path,
                  output: OutputFormat, filters: Filters, label: str | None = None) -> dict[str, Any]:
    """Decode `path` once and write every clip of `spans` to `out_dir`; returns the clips.json content
    (also written, last)."""
    import av

    label = label or str(path)
    fps, sr = output.fps, output.sample_rate
    spf, rem = divmod(sr, fps)
    if rem:
        raise SourceError(f"[output] sample_rate {sr} is not a multiple of fps {fps}; fix the spec")
    sizes = sorted(output.sizes)
    clips = plan_clips(source_id, spans, fps)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(c, k, c.start + k / fps) for c in clips for k in range(c.frames)]
    ti = 0  # next target to fill
    audio = _AudioTrack(sr)
    written: list[dict[str, Any]] = []
    pending: list[_Clip] = []  # clips whose frames are complete, waiting for their audio
    prev = None  # (time, av.VideoFrame, serial number) of the latest decoded frame
    serial = 0
    cache: tuple[int, dict[int, np.ndarray]] | None = None
    decode_errors: list[float] = []
    last_t = None

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise SourceError(f"{label}: cannot be opened ({e.strerror or e}); "
                          "the file is damaged, re-download it") from None

    def pictures(frame_id: int, frame) -> dict[int, np.ndarray]:
        nonlocal cache
        if cache is None or cache[0] != frame_id:
            rgb = frame.to_ndarray(format="rgb24")
            cache = (frame_id, {s: fit_square(rgb, s, output.resize) for s in sizes})
        return cache[1]

    def fill_until(t_next: float | None) -> None:
        """Emit `prev` for every target before the next frame's time (all remaining ones at the end)."""
        nonlocal ti
        while ti < len(targets) and prev is not None and (t_next is None or targets[ti][2] < t_next - EPS):
            clip, k, _ = targets[ti]
            if clip.video is None:
                clip.video = {s: np.empty((clip.frames, s, s, 3), np.uint8) for s in sizes}
            for s, img in pictures(prev[2], prev[1]).items():
                clip.video[s][k] = img
            clip.filled = k + 1
            if clip.filled == clip.frames:
                pending.append(clip)
            ti += 1

    def flush(final: bool) -> None:
        while pending and (final or audio.available_until(pending[0].end)):
            clip = pending.pop(0)
            written.append(_write_clip(clip, audio, out_dir, output, filters, spf))
            clip.video = None
            if pending:
                audio.drop_before(pending[0].start)
        if not pending:  # between clips, keep only what the next clip needs (bounded memory)
            audio.drop_before(targets[ti][0].start if ti < len(targets) else float("inf"))

    with container:
        if not container.streams.video or not container.streams.audio:
            raise SourceError(f"{label}: needs one video and one audio stream; re-download it with audio or drop it")
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        for s in (vs, as_):
            s.codec_context.thread_count = 1
        v0 = Fraction(vs.start_time or 0) * vs.time_base
        for packet in container.demux(vs, as_):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if packet.pts is not None:
                    decode_errors.append(float(packet.pts * packet.time_base - v0))
                else:
                    decode_errors.append(float("nan"))
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
        audio.finish()
        video_end = _declared_end(vs, container, v0)
        audio_end = _declared_end(as_, container, v0)

    if decode_errors:
        first = decode_errors[0]
        where = f"first near t={first:.2f} s" if first == first else "position unknown"
        raise SourceError(f"{label}: corrupt data, {len(decode_errors)} packet(s) could not be decoded "
                          f"({where}); re-download the source")
    if last_t is None:
        raise SourceError(f"{label}: no video frame could be decoded; re-download the source")
    if video_end is not None and float(last_t) < video_end - 1.0:
        raise SourceError(f"{label}: truncated, video decodes to {float(last_t):.2f} s of {video_end:.2f} s "
                          "declared; re-download the source")
    if audio.started_at is None:
        raise SourceError(f"{label}: the audio stream has no decodable samples; re-download it with audio")
    decoded_audio_end = float(audio.origin) + audio.next_in / max(audio.in_rate, 1)
    if audio_end is not None and decoded_audio_end < audio_end - 1.0:
        raise SourceError(f"{label}: truncated, audio decodes to {decoded_audio_end:.2f} s of {audio_end:.2f} s "
                          "declared; re-download the source")
    # Targets past the last frame (within the last frame's duration) hold the last frame.
    fill_until(None)
    flush(final=True)
    return {"clips": written, "video_start_s": float(v0), "audio_start_s": audio.started_at,
            "audio_gaps": audio.gaps}


def _declared_end(stream, container, v0: Fraction) -> float | None:
    if stream.duration:
        return float(Fraction(stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base - v0)
    if container.duration:
        return container.duration / 1e6 - float(v0)
    return None


def _write_clip(clip: _Clip, audio: _AudioTrack, out_dir: Path, output: OutputFormat, filters: Filters,
                spf: int) -> dict[str, Any]:
    samples, zero_filled = audio.take(clip.start, clip.frames * spf)
    smallest = min(clip.video)
    verdict = evaluate_filters(clip.video[smallest], samples, spf, filters)
    files = {}
    for size, frames in sorted(clip.video.items()):
        name = f"{clip.key}.{size}.mp4"
        encode_video(out_dir / name, frames, output.fps, output)
        files[str(size)] = name
    flac = f"{clip.key}.flac"
    encode_flac(out_dir / flac, samples, output.sample_rate)
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


def _resample_one(job: _Job) -> dict[str, Any]:
    import importlib.metadata as md

    import av
    import pandas as pd
    import soxr

    table = pd.read_parquet(job.scenes)
    spans = list(zip(table["start"].astype(float), table["end"].astype(float), table["scene_index"].astype(int)))
    result = resample_file(job.path, job.source_id, spans, job.out_dir, job.output, job.filters, job.label)
    meta = {
        "source_id": job.source_id, "source_sha256": job.sha256,
        "timeline": "t = 0 at the video stream's start_time; each stream placed by its own pts",
        "video_start_s": result["video_start_s"], "audio_start_s": result["audio_start_s"],
        "audio_gaps": result["audio_gaps"],
        "resample": {
            "video": "sample-and-hold: frame k = latest source frame with timestamp <= start + k/fps",
            "audio": f"mean of channels at the source rate, then soxr {SOXR_QUALITY} to {job.output.sample_rate} Hz",
            "soxr_quality": SOXR_QUALITY, "resize": job.output.resize, "resize_filter": "cv2.INTER_AREA",
        },
        "encoder": {"video": "libx264", "x264_params": X264_PARAMS, "crf": job.output.crf,
                    "preset": job.output.preset, "gop": job.output.gop, "threads": 1, "pix_fmt": "yuv420p",
                    "audio": "flac s16"},
        "fps": job.output.fps, "sample_rate": job.output.sample_rate, "sizes": sorted(job.output.sizes),
        "filters_config": asdict(job.filters),
        "versions": {"av": av.__version__, "soxr": soxr.__version__, "numpy": np.__version__,
                     "opencv": _version(md, "opencv-python-headless"),
                     **{k: ".".join(map(str, v)) for k, v in sorted(av.library_versions.items())}},
        "clips": result["clips"],
    }
    atomic_write_json(job.out_dir / "clips.json", meta)
    kept = [c for c in result["clips"] if c["keep"]]
    seconds = sum(c["frames"] for c in kept) / job.output.fps
    return {"clips": len(result["clips"]), "kept": len(kept), "seconds": seconds}


def _version(md, dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _missing_scenes(job: _Job) -> dict[str, Any]:
    raise SourceError(f"{job.source_id}: no clip table {job.scenes}; run `avbench scene-cut` first "
                      f"(see failures/scene-cut/{job.source_id}.json if it failed there)")


def _dispatch(job: _Job) -> dict[str, Any]:
    return _resample_one(job) if job.scenes.exists() else _missing_scenes(job)


def resample_sources(spec: DatasetSpec, root: str | Path, cfg: ResampleConfig = ResampleConfig(),
                     progress: Any = None) -> StageSummary:
    """Resample every ready source of this partition that has a clip table (resumable per source)."""
    from avbench.curate.download import ready_sources
    from avbench.curate.scenes import scenes_path
    from avbench.curate.stage import failure_path

    root = Path(root)
    records = ready_sources(root, cfg.partition)
    jobs, upstream = [], 0
    for rec in records:
        sid = rec["source_id"]
        out = clips_dir(root, sid)
        if not scenes_path(root, sid).exists() and failure_path(root, "scene-cut", sid).exists():
            upstream += 1  # already reported by scene-cut
            continue
        job = _Job(sid, root / rec["path"], f"{rec['path']} ({sid})", scenes_path(root, sid), out, spec.output,
                   spec.filters, rec.get("sha256"))
        jobs.append((sid, out / "clips.json", job))
    return run_stage("resample", root, jobs, _dispatch, workers=cfg.workers,
                     progress=cfg.progress if progress is None else progress, upstream_failed=upstream)
