"""Resample: the alignment contract on synthetic sources with known flashes and tones, filters, bytes."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import soundfile as sf
from support.synthroot import add_synthetic

from avbench.curate.filters import evaluate_filters
from avbench.curate.resample import resample_file
from avbench.curate.spec import ClipPolicy, DatasetSpec, Filters, OutputFormat, SyntheticSource
from avbench.io import sha256_file

SR, FPS, SPF = 16000, 10, 1600


def _decode_clip(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.average_rate == FPS
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])


def _square_in_clip(ev, truth, size):
    """Centre of the event's square in the letterboxed output frame, or None if it is too small."""
    scale = size / max(truth["width"], truth["height"])
    pad_y = (size - round(truth["height"] * scale)) // 2
    cx = (ev["x"] + ev["size"] / 2) * scale
    cy = (ev["y"] + ev["size"] / 2) * scale + pad_y
    return int(cy), int(cx)


# (lossless audio container, vfr, audio offset, tolerance in 16 kHz samples)
CASES = {
    "pcm-cfr": ("mov", "pcm_s16le", False, 0.0, 2),
    "flac-vfr-late-audio": ("mp4", "flac", True, 0.57, 2),
    "aac-vfr-late-audio": ("mp4", "aac", True, 0.81, 16),  # 1 ms
    "aac-cfr": ("mp4", "aac", False, 0.0, 16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_alignment_contract(tmp_path, case):
    ext, codec, vfr, offset, tol = CASES[case]
    truth = add_synthetic(tmp_path, "s", 41, 12.0, ext=ext, audio_codec=codec, vfr=vfr, audio_offset_s=offset)
    # Clip starts off every grid (source frames, 10 fps, audio samples) on purpose.
    spans = [(0.4137, 5.9, 0), (6.03125, 11.8, 1)]
    out = tmp_path / "clips"
    output = OutputFormat(sizes=(64,), resize="letterbox")
    result = resample_file(tmp_path / truth["path"], "s", spans, out, output, Filters())
    assert len(result["clips"]) == 2
    checked_audio = checked_video = 0
    for clip in result["clips"]:
        start, n = clip["start"], clip["frames"]
        assert n == math.floor((clip["end"] - start) * FPS + 1e-6)
        audio, rate = sf.read(out / clip["audio"], dtype="float64")
        assert rate == SR and len(audio) == clip["samples"] == SPF * n  # exact length
        frames = _decode_clip(out / clip["video"]["64"])
        assert frames.shape == (n, 64, 64, 3)
        for ev in truth["events"]:
            rel = ev["time_s"] - start
            if not (0.05 < rel < n / FPS - 0.2):
                continue
            # (a) the tone's onset, on the clip's timeline.
            if ev["audible"]:
                want = rel * SR
                amp = 0.6 * (ev["pan_left"] + ev["pan_right"]) / 2  # mean of channels, not left
                lo = int(want) - 40
                seg = np.abs(audio[lo : int(want) + 80])
                onset = lo + int(np.argmax(seg > 0.5 * amp))
                assert abs(onset - want) <= tol, (case, ev["time_s"], onset, want)
                assert seg.max() == pytest.approx(amp, rel=0.2)
                checked_audio += 1
            # (b) the first clip frame showing the flash is the one the contract predicts.
            k = math.ceil((ev["frame_time_s"] - start) * FPS - 1e-9)
            cy, cx = _square_in_clip(ev, truth, 64)
            color = np.array(ev["color"])
            assert np.abs(frames[k, cy, cx].astype(int) - color).max() < 60, (case, ev, k)
            assert np.abs(frames[k - 1, cy, cx].astype(int) - color).max() > 60, (case, ev, k)
            checked_video += 1
    assert checked_video >= 4 and checked_audio >= 3
    if offset:  # the part of the first clip before the audio starts is silence, and recorded
        first = result["clips"][0]
        # AAC: the decoder also returns the encoder's priming frame (1024 samples at 44.1 kHz) first.
        slack = 1 if codec != "aac" else 1024 / 44100 * SR + 1
        assert first["audio_zero_filled_samples"] == pytest.approx((offset - 0.4137) * SR, abs=slack)


def test_filters_flag_silent_and_frozen_scenes_only(tmp_path):
    from avbench.curate.resample import ResampleConfig, resample_sources
    from avbench.curate.scenes import SceneCutConfig, scene_cut_sources

    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        truth = add_synthetic(root, "s", 51, 14.0)
    spec = DatasetSpec(name="t", description="", target_hours=0.01, sources=(SyntheticSource(),),
                       clip=ClipPolicy(skip_start_s=0.0), output=OutputFormat(sizes=(32, 64)))
    for root in roots:
        assert scene_cut_sources(spec, root, SceneCutConfig(workers=1, progress=False)).done == 1
        assert resample_sources(spec, root, ResampleConfig(workers=1, progress=False)).done == 1
    import json

    meta = json.loads((roots[0] / "clips" / "s" / "clips.json").read_text())
    (s0, s1), = truth["silent_spans"]
    (f0, f1), = truth["frozen_spans"]
    by_reason = {}
    for clip in meta["clips"]:
        inside = lambda a, b: clip["start"] >= a - 0.05 and clip["end"] <= b + 0.05  # noqa: E731
        want = ["silence"] if inside(s0, s1) else ["frozen"] if inside(f0, f1) else []
        assert clip["reasons"] == want and clip["keep"] == (not want), clip
        by_reason.setdefault(tuple(want), 0)
        by_reason[tuple(want)] += 1
        for name in ("silence", "frozen", "black"):  # value and threshold are stored
            f = clip["filters"][name]
            assert "fraction" in f and "max_fraction" in f and isinstance(f["flagged"], bool)
    assert by_reason.get(("silence",)) == 1 and by_reason.get(("frozen",)) == 1 and by_reason.get(()) >= 2
    # Reproducible bytes: two runs into two roots give identical clip files (mp4, flac, clips.json).
    names = sorted(p.name for p in (roots[0] / "clips" / "s").iterdir())
    assert names == sorted(p.name for p in (roots[1] / "clips" / "s").iterdir())
    for name in names:
        assert sha256_file(roots[0] / "clips" / "s" / name) == sha256_file(roots[1] / "clips" / "s" / name), name


def test_filter_functions_on_arrays():
    cfg = Filters()
    rng = np.random.default_rng(0)
    moving = rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    tone = 0.1 * np.sin(np.arange(20 * SPF) / 5.0)
    good = evaluate_filters(moving, tone, SPF, cfg)
    assert good["keep"] and good["reasons"] == []
    black = evaluate_filters(np.full((20, 16, 16, 3), 5, np.uint8), tone, SPF, cfg)
    assert black["reasons"] == ["frozen", "black"]
    quiet = evaluate_filters(moving, tone * 1e-3, SPF, cfg)  # about -63 dBFS
    assert quiet["reasons"] == ["silence"] and quiet["filters"]["silence"]["fraction"] == 1.0
