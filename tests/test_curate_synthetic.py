"""Synthetic sources: deterministic bytes, the advertised format, and a ground truth the file honours."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avbench.curate.spec import SyntheticSource
from avbench.curate.synthetic import plan_synthetic, render_synthetic
from avbench.io import sha256_file


def test_plan_is_deterministic_and_ids_are_dot_free():
    src = SyntheticSource(count=4, seed=3, min_duration_s=20, max_duration_s=40)
    plans = plan_synthetic(src)
    assert plans == plan_synthetic(src)
    assert [p.source_id for p in plans] == [f"synth-3-{i}" for i in range(4)]
    assert len({p.seed for p in plans}) == 4
    assert all(20 <= p.duration_s <= 40 and "." not in p.source_id for p in plans)
    assert plan_synthetic(SyntheticSource(count=4, seed=4)) != plans


def test_same_seed_same_bytes_and_typical_download_format(tmp_path):
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    truth = render_synthetic(a, 5, 4.0, width=320, height=180)
    assert render_synthetic(b, 5, 4.0, width=320, height=180) == truth
    render_synthetic(c, 6, 4.0, width=320, height=180)
    assert sha256_file(a) == sha256_file(b) != sha256_file(c)

    with av.open(str(a)) as f:
        v, s = f.streams.video[0], f.streams.audio[0]
        assert (v.codec_context.name, v.width, v.height, v.average_rate) == ("h264", 320, 180, 30)
        assert (s.codec_context.name, s.sample_rate, s.channels) == ("aac", 44100, 2)
        assert sum(1 for _ in f.decode(v)) == len(truth["frame_times_s"]) == 120


def _decode(path):
    """(frame times [s], frames uint8 [N,H,W,3]) and (audio start [s], float [channels, n])."""
    with av.open(str(path)) as f:
        v = f.streams.video[0]
        times, frames = [], []
        for fr in f.decode(v):
            times.append(float(fr.pts * v.time_base))
            frames.append(fr.to_ndarray(format="rgb24"))
    with av.open(str(path)) as f:
        s = f.streams.audio[0]
        chunks, start = [], None
        for fr in f.decode(s):
            start = float(fr.pts * s.time_base) if start is None else start
            x = fr.to_ndarray()
            chunks.append(x.reshape(-1, s.channels).T if not fr.format.is_planar else x)
        audio = np.concatenate(chunks, 1).astype(np.float64)
        if audio.dtype.kind != "f" or np.abs(audio).max() > 2:
            audio = audio / 32768.0
    return np.array(times), np.stack(frames), start, audio


@pytest.mark.parametrize("vfr,offset", [(False, 0.0), (True, 0.25)])
def test_truth_matches_the_file(tmp_path, vfr, offset):
    path = tmp_path / "s.mov"
    truth = render_synthetic(path, 11, 16.0, width=320, height=180, audio_codec="pcm_s16le", vfr=vfr,
                             audio_offset_s=offset)
    times, frames, a_start, audio = _decode(path)
    sr = truth["sample_rate"]
    np.testing.assert_allclose(times, truth["frame_times_s"], atol=1e-9)
    if vfr:
        assert np.ptp(np.diff(times)) > 0.01  # really irregular
    assert a_start == pytest.approx(offset, abs=1 / sr)

    # Scene cuts: the first frame of each scene differs strongly from the one before it.
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    cut_frames = [int(np.searchsorted(times, c - 1e-9)) for c in truth["scene_cuts_s"]]
    assert len(cut_frames) >= 3
    assert all(diffs[j - 1] > 20 for j in cut_frames)
    assert np.delete(diffs, [j - 1 for j in cut_frames]).max() < 5

    # Events: the square has its class colour on frames inside [frame_time, flash_end) only,
    # and the tone starts at time_s (lossless audio: to the sample).
    mono = audio.mean(axis=0)
    assert truth["events"]
    for ev in truth["events"]:
        j = int(np.searchsorted(times, ev["frame_time_s"] - 1e-9))
        cy, cx = ev["y"] + ev["size"] // 2, ev["x"] + ev["size"] // 2
        assert np.abs(frames[j, cy, cx].astype(int) - ev["color"]).max() < 40
        assert np.abs(frames[j - 1, cy, cx].astype(int) - ev["color"]).max() > 40
        if ev["audible"]:
            onset = int(round((ev["time_s"] - a_start) * sr))
            assert abs(mono[onset]) > 0.25 and np.abs(mono[onset - 20 : onset]).max() < 0.05
    assert any(not ev["audible"] for ev in truth["events"]) == (offset > truth["events"][0]["time_s"])

    # Silent spans are digital silence; frozen spans repeat one picture.
    (s0, s1), = truth["silent_spans"]
    assert np.abs(mono[int((s0 - a_start) * sr) + 1 : int((s1 - a_start) * sr) - 1]).max() == 0
    (f0, f1), = truth["frozen_spans"]
    held = frames[(times >= f0) & (times < f1)]
    assert len(held) > 30 and np.abs(np.diff(held.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)).max() < 0.5
    assert np.abs(mono[int((f0 - a_start) * sr) : int((f1 - a_start) * sr)]).max() > 0.01  # hum goes on


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="audio_codec"):
        render_synthetic(tmp_path / "x.mp4", 0, 2.0, audio_codec="mp3")
    with pytest.raises(ValueError, match="at least one"):
        render_synthetic(tmp_path / "x.mp4", 0, 2.0, with_audio=False, with_video=False)
