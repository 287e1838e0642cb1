"""The one reproducible media writer: H.264 (+ AAC) mp4, FLAC and WAV, used by every stage that writes
audio or video (resampled clips, synthetic sources, `avbench sample`, training previews).

Reproducible means: the same frames and samples give the same bytes on every run with the same library
versions. What that takes (each was seen to break it):
- libx264 with one thread everywhere (`threads=1`, no lookahead or sliced threads): threaded encoding
  decides frame types by timing;
- `mbtree=0`: with the macroblock tree, libx264 (core 165) gave different bytes for the same small
  (32/64 px) pictures from run to run, single-threaded, depending on what was in freed heap memory;
- pictures converted to yuv420p here, with the row padding of every plane zeroed: frame buffers have
  aligned line sizes and the padding bytes are otherwise uninitialised;
- AAC (FFmpeg's native encoder) and FLAC/WAV (libsndfile) with one thread and fixed bit rates; no
  wall-clock metadata is written by either muxer.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from avbench.io import atomic_path

X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0"
AAC_FRAME = 1024  # samples per AAC frame
AAC_BIT_RATE = 128_000


@dataclass(frozen=True)
class H264:
    """Encoder quality settings; everything else is fixed for reproducibility."""

    crf: int = 18
    preset: str = "medium"
    gop: int | None = None  # keyframe interval in frames; None = libx264's default (250)

    def options(self) -> dict[str, str]:
        opts = {"crf": str(self.crf), "preset": self.preset, "threads": "1", "x264-params": X264_PARAMS}
        if self.gop is not None:
            opts["g"] = str(self.gop)
        return opts

    def describe(self) -> dict[str, Any]:
        """What went into the encoder, for provenance records."""
        return {"video": "libx264", "x264_params": X264_PARAMS, "crf": self.crf, "preset": self.preset,
                "gop": self.gop, "threads": 1, "pix_fmt": "yuv420p"}


_local = threading.local()


def _reformatter():
    """This thread's scaler: `frame.reformat` builds a new swscale context per call (0.8 ms of each
    256 px frame, most of the conversion); a kept one reuses it, with the same pixels."""
    from av.video.reformatter import VideoReformatter

    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


def yuv420_frame(img: np.ndarray):
    """RGB uint8 [H, W, 3] → an av.VideoFrame in yuv420p whose row padding is zeroed."""
    import av

    frame = _reformatter().reformat(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"),
                                    format="yuv420p")
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size).copy()
        rows[:, plane.width :] = 0
        plane.update(rows.tobytes())
    return frame


def add_h264_stream(container, width: int, height: int, settings: H264 = H264(), *, rate: int | None = None,
                    time_base: Fraction | None = None):
    """A reproducibly configured libx264 stream on an open PyAV output container.

    `rate` is a constant frame rate (frame k has pts k); `time_base` instead lets the caller give its own
    timestamps (variable frame rate)."""
    stream = container.add_stream("libx264", rate=rate, options=settings.options())
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    if time_base is not None:
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
    return stream


def add_aac_stream(container, sample_rate: int, layout: str = "mono", bit_rate: int = AAC_BIT_RATE):
    stream = container.add_stream("aac", rate=sample_rate, layout=layout)
    stream.codec_context.thread_count = 1
    stream.time_base = Fraction(1, sample_rate)
    stream.bit_rate = bit_rate
    return stream


def audio_frame(samples: np.ndarray, sample_rate: int, pts: int, layout: str = "mono"):
    """float32 [channels, n] (or [n] for mono) in [-1, 1] → an av.AudioFrame (fltp) at sample `pts`."""
    import av

    planar = np.ascontiguousarray(np.atleast_2d(samples).astype(np.float32))
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, pts, Fraction(1, sample_rate)
    return frame


@contextlib.contextmanager
def open_mp4(path: str | Path) -> Iterator[Any]:
    """An mp4 output container written atomically (temp file + rename)."""
    import av

    with atomic_path(path) as tmp:
        container = av.open(str(tmp), "w", format="mp4")
        try:
            yield container
        finally:
            container.close()


def write_mp4(path: str | Path, frames: np.ndarray, audio: np.ndarray | None, fps: int, sample_rate: int = 16000,
              *, settings: H264 = H264()) -> None:
    """Frames [F, H, W, 3] uint8 at `fps` as H.264, plus mono AAC when `audio` (float [L]) is given.

    Audio frames are interleaved after the video frame they belong to, so players need little buffer."""
    n, h, w, _ = frames.shape
    with open_mp4(path) as container:
        vs = add_h264_stream(container, w, h, settings, rate=fps)
        a_s = add_aac_stream(container, sample_rate) if audio is not None else None
        a_next = 0

        def push_audio(until: int) -> None:
            nonlocal a_next
            while a_s is not None and a_next < min(until, len(audio)):
                end = min(a_next + AAC_FRAME, len(audio))
                container.mux(a_s.encode(audio_frame(audio[a_next:end], sample_rate, a_next)))
                a_next = end

        for k in range(n):
            frame = yuv420_frame(frames[k])
            frame.pts = k
            container.mux(vs.encode(frame))
            push_audio((k + 1) * sample_rate // fps)
        container.mux(vs.encode(None))
        if a_s is not None:
            push_audio(len(audio))
            container.mux(a_s.encode(None))


def to_uint8_frames(video) -> np.ndarray:
    """A torch tensor [F, 3, H, W] in [-1, 1] → [F, H, W, 3] uint8 (round half to even, like torch)."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_pcm(audio) -> np.ndarray:
    """A torch tensor [1, L] or [L] in [-1, 1] → float32 numpy [L] clipped to [-1, 1]."""
    return audio.float().reshape(-1).clamp(-1, 1).cpu().numpy()


def pcm16(audio: np.ndarray, full_scale: float = 32768.0) -> np.ndarray:
    """float in [-1, 1] → int16, rounded half to even and clipped to the int16 range.

    The default scale is the exact inverse of how soundfile (and every reader in avbench) turns int16
    into float (÷ 32768), so audio read from a 16-bit file is written back bit for bit."""
    scaled = np.asarray(audio, np.float32) * np.float32(full_scale)
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


def write_flac(path: str | Path, audio: np.ndarray, sample_rate: int, full_scale: float = 32768.0) -> None:
    """Mono float audio as 16-bit FLAC (see `pcm16` for the scale)."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm16(audio, full_scale), sample_rate, format="FLAC", subtype="PCM_16")


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono float audio as 16-bit WAV (see `pcm16` for the scale)."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm16(audio), sample_rate, format="WAV", subtype="PCM_16")
