"""Decode one training window from a shard sample's bytes: only the frames and samples it needs.

Video: PyAV on an in-memory mp4, seek to the keyframe at or before the window, decode forward and drop
frames before it; frame k of a clip is the one whose timestamp rounds to k/fps. One decoder and one scaler thread:
a DataLoader worker is already one process per core, thread start-up costs more than a 64 px
frame, and swscale's automatic thread pool deadlocks in a fork()ed worker once the parent has used it.
Audio: libsndfile (soundfile) seeks inside the FLAC and reads exactly `frames · rate / fps` samples.
"""

from __future__ import annotations

import io
import os

import numpy as np

from avbench.errors import DataError

# One reformatter per process: building an SwsContext per frame is the slow path in PyAV 18. Keyed by
# pid because a context inherited through fork() is not safe to use in the child.
_REFORMATTER: tuple[int, object] | None = None


def _reformatter():
    global _REFORMATTER
    if _REFORMATTER is None or _REFORMATTER[0] != os.getpid():
        from av.video.reformatter import VideoReformatter

        _REFORMATTER = (os.getpid(), VideoReformatter())
    return _REFORMATTER[1]


class DecodeError(DataError):
    """A sample's media does not hold the window its metadata promises."""


def decode_video_window(mp4: bytes, start: int, frames: int, fps: int = 10) -> np.ndarray:
    """uint8 RGB frames [frames, H, W, 3] for clip frames start … start+frames-1."""
    import av

    out: list[np.ndarray] = []
    with av.open(io.BytesIO(mp4)) as container:
        vs = container.streams.video[0]
        vs.thread_type = "NONE"
        vs.codec_context.thread_count = 1
        tb = vs.time_base
        t0 = vs.start_time or 0
        if start > 0:
            container.seek(t0 + int(start / (fps * tb)), stream=vs, backward=True, any_frame=False)
        ref = _reformatter()
        for frame in container.decode(vs):
            index = round(float((frame.pts - t0) * tb) * fps)
            if index < start:
                continue
            out.append(ref.reformat(frame, format="rgb24", threads=1).to_ndarray())
            if len(out) == frames:
                break
    if len(out) < frames:
        raise DecodeError(f"video has only {len(out)} frames from frame {start}, need {frames}")
    return np.stack(out)


def decode_audio_window(flac: bytes, start_sample: int, samples: int) -> np.ndarray:
    """float32 mono samples [samples] starting at `start_sample` (channels averaged if there are more)."""
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(flac)) as f:
        f.seek(start_sample)
        a = f.read(samples, dtype="float32", always_2d=True)
    if a.shape[0] < samples:
        raise DecodeError(f"audio has only {a.shape[0]} samples from sample {start_sample}, need {samples}")
    return a.mean(axis=1) if a.shape[1] > 1 else a[:, 0]
