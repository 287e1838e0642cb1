"""Audio for resample: the downmix to mono and a streaming 16 kHz track on the shared timeline.

Downmix (`downmix_weights`): the ITU-R BS.775 fold-down that FFmpeg's libswresample applies by default,
LFE dropped. First to stereo,

    L' = FL + √½·FC + √½·(BL or SL),   R' = FR + √½·FC + √½·(BR or SR)   (BC: ½ into each side),

then mono = (L' + R') / 2, so a stereo source stays the plain mean of its two channels. Per input
channel that is FL, FR ½; FC √½ ≈ 0.707; surrounds √½/2 ≈ 0.354; LFE 0. These are libswresample's
relative weights (its 5.1 → mono matrix is FL, FR √½, FC 1, surrounds ½, LFE 0 — ours × √2); with float
output it applies them unnormalised, with integer output it divides them by their sum. Ours are a fixed
scale of it, so concert audio keeps its level instead of the 7–10 dB loss of averaging six channels
(the previous behaviour). Layouts without channel names fall back to the mean of the channels.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import soxr

SOXR_QUALITY = "VHQ"
_H = math.sqrt(0.5)
# channel name (FFmpeg's) → its share of (L', R')
_TO_STEREO: dict[str, tuple[float, float]] = {
    "FL": (1.0, 0.0), "FR": (0.0, 1.0), "FC": (_H, _H), "LFE": (0.0, 0.0), "LFE2": (0.0, 0.0),
    "BL": (_H, 0.0), "BR": (0.0, _H), "SL": (_H, 0.0), "SR": (0.0, _H), "BC": (0.5, 0.5),
    "FLC": (1.0, 0.0), "FRC": (0.0, 1.0), "WL": (1.0, 0.0), "WR": (0.0, 1.0),
}


def downmix_weights(names: list[str]) -> np.ndarray | None:
    """Mono weight per channel (see the module docstring); None = plain mean (mono, stereo, unnamed)."""
    if len(names) <= 2 and set(names) <= {"FL", "FR", "FC"}:
        return None  # mono, or stereo whose mean is exactly (L' + R') / 2
    if not all(n in _TO_STEREO for n in names):
        return None  # an unnamed or exotic layout: no standard says where its channels go
    return np.array([0.5 * (left + right) for left, right in (_TO_STEREO[n] for n in names)], np.float32)


@functools.lru_cache(maxsize=64)
def _weights_of(names: tuple[str, ...]) -> np.ndarray | None:
    return downmix_weights(list(names))  # once per layout, not once per 1024-sample frame


def frame_to_mono(frame) -> np.ndarray:
    """An av.AudioFrame → float32 mono (the standard downmix above), full scale = 1.0."""
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
    weights = _weights_of(tuple(c.name for c in frame.layout.channels))
    if weights is None:
        return x.mean(axis=0, dtype=np.float32)
    return (weights @ x).astype(np.float32)


class AudioTrack:
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
