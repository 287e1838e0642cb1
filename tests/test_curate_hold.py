"""The sample-and-hold rule shared by resample, MMAudio's conditioning frames and text2av's 8 → 10 fps."""

from __future__ import annotations

import pytest

from avbench.curate.hold import EPS, hold_indices, shows, uniform_times


def test_each_output_frame_holds_the_latest_source_frame_at_or_before_it():
    # 8 fps → 10 fps: targets 0, .1, ..., .9 s against frames at 0, .125, ..., .875 s
    assert hold_indices(uniform_times(8, 8), 10, 10) == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7]
    # 10 fps → 25 fps (Synchformer) holds frames 2-3 times; → 8 fps (CLIP) skips some
    assert hold_indices(uniform_times(4, 10), 25, 10) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert hold_indices(uniform_times(10, 10), 8, 8) == [0, 1, 2, 3, 5, 6, 7, 8]


def test_a_frame_within_eps_of_the_target_is_shown_and_vfr_times_work():
    assert shows(0.1 + EPS / 2, 0.1) and not shows(0.1 + 2 * EPS, 0.1)
    times = [0.0, 0.03, 0.2999999, 0.31]  # variable frame rate, one frame a hair before 0.3
    assert hold_indices(times, 10, 4) == [0, 1, 1, 2]
    assert hold_indices(times, 10, 2, start=0.25) == [1, 3]


def test_targets_before_the_first_frame_hold_the_first_and_no_frames_is_refused():
    assert hold_indices([0.5, 0.6], 10, 3) == [0, 0, 0]
    with pytest.raises(ValueError):
        hold_indices([], 10, 3)
