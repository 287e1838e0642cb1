"""The sample-and-hold rule that maps a source's frame times onto a fixed output rate.

Output frame k of a clip starting at `start` shows the latest source frame whose time is at or before
`start + k / fps`. Curation (resample) applies it while streaming a decode; MMAudio's conditioning
frames (8 and 25 fps from 10 fps clips) and CogVideoX's 8 fps output (to the benchmark's 10 fps) use the
same predicate through `hold_indices`, so a generated clip and a curated one are timed alike.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

EPS = 1e-6  # seconds: source timestamps are exact fractions, targets are floats


def shows(frame_time: float, target: float) -> bool:
    """Whether a frame at `frame_time` is (or precedes) the one held at output time `target`."""
    return frame_time <= target + EPS


def hold_indices(times: Sequence[float], fps: float, frames: int, start: float = 0.0) -> list[int]:
    """For output frames 0..frames-1 at `fps` from `start`: the index into `times` (sorted source frame
    times, seconds) of the frame each one holds. Targets before the first frame hold the first frame."""
    if not times:
        raise ValueError("no source frames to hold")
    shifted = [t - EPS for t in times]  # bisect on t - EPS <= target  <=>  shows(t, target)
    return [max(bisect.bisect_right(shifted, start + k / fps) - 1, 0) for k in range(frames)]


def uniform_times(count: int, fps: float) -> list[float]:
    """Frame times of a constant-rate sequence (generated video, decoded 10 fps clips)."""
    return [k / fps for k in range(count)]
