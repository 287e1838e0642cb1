"""Test helper: small audio-video sources with one unusual property each, written with PyAV.

`write_source` makes a file whose picture and sound are simple functions of time, and lets a test give
it what real footage has and synthetic sources lack: a 5.1 layout, a display-matrix rotation (as phones
write), timestamps that start hours in, an audio stream shorter than the video.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from avbench.media import H264, add_h264_stream, yuv420_frame

Picture = Callable[[int, float], np.ndarray]  # (frame index, time in s) → RGB uint8 [H, W, 3]
Sound = Callable[[np.ndarray], np.ndarray]  # times [n] in s → float32 [channels, n]


def scene_picture(width: int, height: int, scene_s: float = 2.0) -> Picture:
    """A new flat colour every `scene_s` (hard cuts) with a moving bar (never frozen)."""

    def draw(k: int, t: float) -> np.ndarray:
        rng = np.random.default_rng(int(t // scene_s))
        img = np.empty((height, width, 3), np.uint8)
        img[:] = rng.integers(30, 220, 3, dtype=np.uint8)
        x = int(k * 3) % max(1, width - 4)
        img[:, x : x + 4] = 250
        return img

    return draw


def tone(freq: float = 440.0, amp: float = 0.3, channels: int = 2) -> Sound:
    def sound(t: np.ndarray) -> np.ndarray:
        x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        return np.repeat(x[None], channels, axis=0)

    return sound


def write_source(path: Path, seconds: float, *, picture: Picture, sound: Sound, fps: int = 10,
                 width: int = 160, height: int = 90, layout: str = "stereo", sample_rate: int = 48000,
                 rotation: int = 0, start_s: float = 0.0, audio_seconds: float | None = None) -> Path:
    """Write `seconds` of video (and `audio_seconds` of AAC audio, default the same) to `path`.

    `rotation`: counter-clockwise degrees stored in the display matrix; `start_s`: the first timestamp
    of both streams (keep it in .mkv, which stores absolute times)."""
    path = Path(path)
    audio_seconds = seconds if audio_seconds is None else audio_seconds
    with av.open(str(path), "w") as c:
        vs = add_h264_stream(c, width, height, H264(crf=20, preset="veryfast"), rate=fps,
                             time_base=Fraction(1, fps))
        if rotation:
            vs.set_display_rotation(rotation)
        a_s = c.add_stream("aac", rate=sample_rate, layout=layout)
        a_s.codec_context.thread_count = 1
        a_s.time_base = Fraction(1, sample_rate)
        v0, a0 = round(start_s * fps), round(start_s * sample_rate)
        n_audio = int(round(audio_seconds * sample_rate))
        a_next = 0

        def push_audio(until: int) -> None:
            nonlocal a_next
            while a_next < min(until, n_audio):
                end = min(a_next + 1024, n_audio)
                x = np.ascontiguousarray(sound(np.arange(a_next, end) / sample_rate).astype(np.float32))
                frame = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, a0 + a_next, Fraction(1, sample_rate)
                for p in a_s.encode(frame):
                    c.mux(p)
                a_next = end

        for k in range(int(round(seconds * fps))):
            frame = yuv420_frame(picture(k, k / fps))
            frame.pts, frame.time_base = v0 + k, Fraction(1, fps)
            for p in vs.encode(frame):
                c.mux(p)
            push_audio((k + 1) * sample_rate // fps)
        for p in vs.encode(None):
            c.mux(p)
        push_audio(n_audio)
        for p in a_s.encode(None):
            c.mux(p)
    return path
