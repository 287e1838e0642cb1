"""Probing downloaded files with PyAV: truncation, minimum duration, streams that end early or start late."""

from __future__ import annotations

import pytest
from support.fetchkit import faststart, mux_streams, render_bytes

from avbench.curate.probe import MediaRejected, probe_media


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    good = tmp / "good.mp4"
    good.write_bytes(render_bytes(tmp, 21, duration_s=4.0))
    # moov first (as most web video is served), then cut: the header still claims 4 s.
    fast = faststart(good.read_bytes(), tmp)
    cut = tmp / "cut.mp4"
    cut.write_bytes(fast[: int(len(fast) * 0.6)])
    moov_last_cut = tmp / "moov-last-cut.mp4"
    moov_last_cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"good": good, "cut": cut, "moov_last_cut": moov_last_cut, "tmp": tmp}


def test_good_file_probe(files):
    p = probe_media(files["good"], min_duration_s=1.6)
    assert (p.width, p.height, p.fps) == (96, 64, 10.0)
    assert (p.sample_rate, p.channels, p.video_codec, p.audio_codec) == (16000, 1, "h264", "aac")
    assert p.duration_s == pytest.approx(4.0, abs=0.05)


def test_truncated_after_header_is_transient(files):
    with pytest.raises(MediaRejected, match=r"cut.mp4: (audio|video) stream ends early \(truncated file\?\)") as e:
        probe_media(files["cut"])
    assert e.value.error_class == "transient"


def test_truncated_without_index_is_not_media(files):
    with pytest.raises(MediaRejected, match=r"moov-last-cut.mp4: not a media file \(\d+ bytes; Invalid data") as e:
        probe_media(files["moov_last_cut"])
    assert e.value.error_class == "permanent"


def test_minimum_duration(files):
    with pytest.raises(MediaRejected, match=r"too short \(4.00 s < minimum 11.60 s\)"):
        probe_media(files["good"], min_duration_s=11.6)


def test_audio_ending_long_before_the_video_is_accepted(tmp_path):
    """Before: the first-frame check of the audio demuxed from where the video's end check had left the
    file (11 s), found no audio there and rejected the source as "no decodable frame"."""
    p = probe_media(mux_streams(tmp_path / "short-audio.mp4", video_s=12.0, audio_s=4.0), min_duration_s=1.6)
    assert p.duration_s == pytest.approx(4.0, abs=0.1)  # the usable span: both streams present


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_clock_starting_at_ten_hours_gives_the_real_duration(tmp_path, suffix):
    """Matroska stores such a file's end time (36012 s) as its duration; before, that was the source's
    duration in records, stats.json and `avbench info`."""
    path = mux_streams(tmp_path / f"late{suffix}", video_s=12.0, audio_s=12.0, start_s=36000.0)
    p = probe_media(path, min_duration_s=1.6)
    assert p.duration_s == pytest.approx(12.0, abs=0.1)
    with pytest.raises(MediaRejected, match=r"too short \(1[12]\.\d\d s < minimum 13.00 s\)"):
        probe_media(path, min_duration_s=13.0)
