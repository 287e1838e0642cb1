"""Probing downloaded files with PyAV, and the error classes of failures that need no server."""

from __future__ import annotations

import subprocess

import pytest

from avbench.curate.ytdlp import classify
from avbench.curate.ffmpeg import find_ffmpeg
from avbench.curate.probe import MediaRejected, probe_media
from support.fetchkit import render_bytes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    good = tmp / "good.mp4"
    good.write_bytes(render_bytes(tmp, 21, duration_s=4.0))
    # moov first (as most web video is served), then cut: the header still claims 4 s.
    fast = tmp / "fast.mp4"
    subprocess.run([str(find_ffmpeg()), "-y", "-loglevel", "error", "-i", str(good), "-c", "copy",
                    "-movflags", "+faststart", str(fast)], check=True)
    cut = tmp / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])
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


@pytest.mark.parametrize(
    "message, cls",
    [
        ("ERROR: [youtube] test-id-x: Private video. Sign in if you've been granted access to this video", "permanent"),
        ("ERROR: [youtube] test-id-x: Video unavailable. This video has been removed by the uploader", "permanent"),
        ("ERROR: [youtube] test-id-x: Sign in to confirm you're not a bot. Use --cookies", "transient"),
        ("ERROR: [download] Got error: HTTP Error 403: Forbidden", "transient"),
        ("ERROR: [youtube] test-id-x: Requested format is not available", "permanent"),
        ("ERROR: [download] Got error: The read operation timed out", "transient"),
        ("ERROR: something nobody has seen before", "transient"),
    ],
)
def test_message_classes(message, cls):
    from yt_dlp.utils import DownloadError

    got_cls, msg = classify(DownloadError(message))
    assert got_cls == cls
    assert not msg.startswith("ERROR:") and "\n" not in msg

