"""Memorisation check: copies of training clips are flagged, fresh samples are not; the contact sheet shows
each sample beside its nearest training clip."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from avbench.metrics.contact_sheet import SheetLayout
from avbench.metrics.memorisation import (
    ClipSet,
    MemorisationError,
    default_sources,
    memorisation_record,
    memorisation_space,
)


def _gaussian(rng, n, mix, shift=0.0):
    return rng.normal(size=(n, mix.shape[0])) @ mix + shift


@pytest.fixture(scope="module")
def sets():
    """Train/held-out/generated features of one distribution; the first 12 samples copy training clips
    (6 exact, 6 "re-encoded": a small perturbation), the last 12 are fresh draws."""
    rng = np.random.default_rng(3)
    d = 24
    mix = rng.normal(size=(d, d)) * np.linspace(0.2, 5.0, d)  # very different spreads per dimension
    train = _gaussian(rng, 300, mix, shift=2.0)
    heldout = _gaussian(rng, 200, mix, shift=2.0)
    copied = rng.choice(len(train), 12, replace=False)
    copies = train[copied].copy()
    copies[6:] += rng.normal(size=(6, d)) * 1e-3 * train.std(axis=0)
    samples = np.concatenate([copies, _gaussian(rng, 12, mix, shift=2.0)])
    return train, heldout, samples, copied


def test_copies_are_flagged_and_fresh_samples_are_not(sets):
    train, heldout, samples, copied = sets
    r = memorisation_space(samples, train, heldout, space="i3d")
    assert r.flagged[:12].all() and not r.flagged[12:].any()
    np.testing.assert_array_equal(r.sample_idx[:12], copied)
    assert (r.sample_dist[:6] == 0).all() and (r.sample_dist[6:12] < 1e-2).all()
    # independently: nearest neighbours by brute force on train-standardised features, RMS per dimension
    mu, sd = train.mean(0), train.std(0)
    z = lambda a: (a - mu) / sd
    d_h = cdist(z(heldout), z(train)).min(axis=1) / np.sqrt(train.shape[1])
    d_s = cdist(z(samples), z(train)).min(axis=1) / np.sqrt(train.shape[1])
    np.testing.assert_allclose(r.heldout_dist, d_h, rtol=1e-9)
    np.testing.assert_allclose(r.sample_dist, d_s, rtol=1e-9, atol=1e-12)
    assert r.threshold == pytest.approx(np.percentile(d_h, 1.0))
    s = r.summary()
    assert s["fraction_flagged"] == 0.5 and s["n_flagged"] == 12 and s["n_heldout"] == 200


def test_fresh_samples_near_the_baseline_are_flagged_at_about_the_percentile():
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(16, 16))
    train, heldout, fresh = _gaussian(rng, 400, mix), _gaussian(rng, 2000, mix), _gaussian(rng, 2000, mix)
    r = memorisation_space(fresh, train, heldout, percentile=5.0)
    assert 0.02 < r.summary()["fraction_flagged"] < 0.08  # ≈ 5 % by construction, not 0 and not all


def test_samples_without_a_feature_are_ignored_and_empty_sets_refused(sets):
    train, heldout, samples, _ = sets
    s = samples.copy()
    s[0] = np.nan  # e.g. a clip whose audio is too short for one VGGish example
    r = memorisation_space(s, train, heldout)
    assert not r.flagged[0] and r.sample_idx[0] == -1 and r.summary()["n_samples"] == len(s) - 1
    with pytest.raises(MemorisationError, match="held-out"):
        memorisation_space(samples, train, heldout[:0], space="vggish")


def _frames(rng, n, tile=64):
    return rng.integers(0, 256, (n, 3, tile, tile, 3), dtype=np.uint8)


def test_contact_sheet_shows_each_sample_beside_its_nearest_training_clip(sets, tmp_path):
    train, heldout, samples, copied = sets
    rng = np.random.default_rng(0)
    train_thumbs = _frames(rng, len(train))
    gen_thumbs = _frames(rng, len(samples))
    gen_thumbs[:12] = train_thumbs[copied]  # the copies look like their originals
    gen = ClipSet([f"gen-{i}" for i in range(len(samples))], {"i3d": samples}, gen_thumbs)
    tr = ClipSet([f"train-{i}" for i in range(len(train))], {"i3d": train}, train_thumbs)
    ho = ClipSet([f"test-{i}" for i in range(len(heldout))], {"i3d": heldout}, None)
    png = tmp_path / "run.memorisation.png"
    rec = memorisation_record(gen, tr, ho, png=png, top=16, tile=64)
    json.dumps(rec)  # the section goes into a JSON record as is
    assert rec["spaces"]["i3d"]["fraction_flagged"] == 0.5 and rec["contact_sheet"] == png.name
    closest = rec["closest"]
    assert len(closest) == 16 and [c["i3d"]["flagged"] for c in closest].count(True) == 12
    dists = [c["i3d"]["distance"] for c in closest]
    assert dists == sorted(dists)

    img = np.asarray(Image.open(png).convert("RGB"))
    layout = SheetLayout(tile=64, frames=3, rows=16)
    assert img.shape == (layout.height, layout.width, 3) == (4 + 14 + 16 * (14 + 64 + 4), 2 * 4 + 6 * 64 + 16, 3)
    for r, c in enumerate(closest):
        g, t = int(c["sample"].split("-")[1]), int(c["i3d"]["train"].split("-")[1])
        for j in range(3):
            x0, y0, x1, y1 = layout.tile_box(r, "sample", j)
            np.testing.assert_array_equal(img[y0:y1, x0:x1], gen_thumbs[g, j])
            x0, y0, x1, y1 = layout.tile_box(r, "train", j)
            np.testing.assert_array_equal(img[y0:y1, x0:x1], train_thumbs[t, j])
        # the caption band above the tiles carries text (the keys)
        caption = img[y0 - layout.caption_h : y0, layout.pad : layout.width // 2]
        assert (caption < 128).any()
    # for a copy the two halves show the same frames; for a fresh sample they do not
    first_fresh = next(r for r, c in enumerate(closest) if not c["i3d"]["flagged"])
    for r, same in ((0, True), (first_fresh, False)):
        a = img[slice(*layout.tile_box(r, "sample", 0)[1::2]), slice(*layout.tile_box(r, "sample", 0)[0::2])]
        b = img[slice(*layout.tile_box(r, "train", 0)[1::2]), slice(*layout.tile_box(r, "train", 0)[0::2])]
        assert np.array_equal(a, b) is same


def test_default_sources_follow_the_reference_dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "shards").mkdir(parents=True)
    (root / "shards" / "index.json").write_text("{}")
    assert default_sources(f"{root}:test:64") == (f"{root}:train:64", f"{root}:test:64")
    assert default_sources(f"{root}:train") == (f"{root}:train", f"{root}:test")  # mmdiffusion's train reference
    assert default_sources(str(root)) == (f"{root}:train", f"{root}:test")  # a track's dataset root
    assert default_sources(str(tmp_path), train=f"{root}:train", heldout=f"{root}:val") == (f"{root}:train", f"{root}:val")
    with pytest.raises(MemorisationError, match="--memorisation-train"):
        default_sources(str(tmp_path / "folder"))
    with pytest.raises(MemorisationError, match="is the training set"):
        default_sources(f"{root}:test", heldout=f"{root}:train")


def test_eval_memorisation_end_to_end_flags_reencoded_training_clips(demo_dataset, tmp_path, monkeypatch):
    """`avbench eval --memorisation` on the demo dataset, audio path with seeded random VGGish weights
    (weight-free): samples that are re-encoded training clips are flagged, fresh ones are not, and the
    contact sheet shows each sample beside its nearest training clip."""
    import soundfile as sf
    from support.evalkit import SR, make_clip, write_av_mp4
    from typer.testing import CliRunner

    from avbench.cli import app
    from avbench.metrics.sources import iter_clips, parse_source

    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_VGGISH_WEIGHTS", raising=False)
    train = list(iter_clips(parse_source(f"{demo_dataset}:train:64"), 16))
    samples, rows = tmp_path / "samples", []
    copies = train[:2]
    fresh = [make_clip(40 + i, "b", size=64) for i in range(2)]
    for i, (frames, audio) in enumerate([(c.frames, c.audio) for c in copies] + fresh):
        write_av_mp4(samples / "video" / f"{i}.mp4", frames, audio)  # a re-encode (H.264 crf 18)
        (samples / "audio").mkdir(exist_ok=True)
        sf.write(samples / "audio" / f"{i}.wav", audio, SR)  # 16-bit PCM: the audio is re-quantised too
        rows.append({"index": i})
    (samples / "samples.json").write_text(json.dumps({"samples": rows}))

    res = CliRunner().invoke(app, [
        "eval", "--samples", str(samples), "--reference", f"{demo_dataset}:test:64", "--memorisation",
        "--memorisation-spaces", "vggish", "--allow-random-vggish", "--results-dir", str(tmp_path / "results"),
        "--name", "mem", "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "results" / "mem.json").read_text())
    mem = rec["memorisation"]
    assert mem["train"]["split"] == "train" and mem["heldout"]["split"] == "test"
    assert mem["vggish"]["random_weights"] is True and any("RANDOM" in w for w in rec["warnings"])
    by_sample = {c["sample"]: c["vggish"] for c in mem["closest"]}
    for i, c in enumerate(copies):
        assert by_sample[str(i)]["flagged"] and by_sample[str(i)]["train"] == c.key
    assert not by_sample["2"]["flagged"] and not by_sample["3"]["flagged"]
    assert rec["scores"]["memorisation_vggish"] == 0.5 == mem["spaces"]["vggish"]["fraction_flagged"]

    png = tmp_path / "results" / mem["contact_sheet"]
    assert png.name == "mem.memorisation.png"
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    layout = SheetLayout(tile=64, frames=3, rows=4)
    assert img.shape == (layout.height, layout.width, 3)
    for r, c in enumerate(mem["closest"]):
        left = img[slice(*layout.tile_box(r, "sample", 0)[1::2]), slice(*layout.tile_box(r, "sample", 0)[0::2])]
        right = img[slice(*layout.tile_box(r, "train", 0)[1::2]), slice(*layout.tile_box(r, "train", 0)[0::2])]
        nearest = next(t for t in train if t.key == c["vggish"]["train"])
        assert np.abs(right - nearest.frames[0].astype(int)).mean() < 1e-9  # the neighbour's own first frame
        if c["vggish"]["flagged"]:  # a re-encode: the sample's tile shows (nearly) the same picture
            assert np.abs(left - right).mean() < 4
        else:
            assert np.abs(left - right).mean() > 20
