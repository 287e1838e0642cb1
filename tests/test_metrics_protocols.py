"""Eval protocols: the windows each one draws, its uint8 conversion, its Fréchet distance, its record."""

import io
import json
import random
import tarfile

import numpy as np
import pytest
from support.evalkit import make_sample_folder
from support.shardkit import level, make_sharded_root
from typer.testing import CliRunner

from avbench.cli import app
from avbench.metrics.frechet import frechet_distance_from_features
from avbench.metrics.protocols import PROTOCOLS, draw_windows, frechet_mmdiffusion, to_protocol_uint8
from avbench.metrics.sources import iter_windows, list_clips, parse_source, reference_fingerprint

# 12 frames: shorter than a window, so VideoClips gives it no clip and styleganv drops it.
SOURCES = {"synth-3-0": [20, 16], "synth-3-1": [12, 31], "synth-3-2": [17]}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sharded_root(tmp_path_factory.mktemp("protocols"), SOURCES, seed=3, samples_per_shard=2)


def _lengths_from_tars(root, split: str, size: int) -> list[tuple[str, int]]:
    """(key, frames) of a split in shard-index order, read straight from the tars (not through avbench)."""
    index = json.loads((root / "shards" / "index.json").read_text())
    out = []
    for row in index["shards"]:
        if row["split"] == split and row["size"] == size:
            with tarfile.open(root / "shards" / row["path"]) as tar:
                for m in tar.getmembers():
                    if m.name.endswith(".json"):
                        meta = json.load(tar.extractfile(m))
                        out.append((m.name.split(".")[0], meta["video"]["frames"]))
    return out


def _videoclips_then_shuffle(lengths: list[int], seed: int, n: int, size: int = 16, step: int = 1):
    """torchvision VideoClips(clip_length_in_frames=size, frames_between_clips=step) over the videos in
    order, then MM-Diffusion's `random.shuffle` of the clip indices (here seeded), the first n:
    (video index, first frame)."""
    clips = []
    for video, total in enumerate(lengths):
        if total < size:  # `unfold` of fewer points than the window gives no clip
            continue
        for k in range((total - size) // step + 1):
            clips.append((video, k * step))
    order = list(range(len(clips)))
    random.Random(seed).shuffle(order)
    return [clips[i] for i in order][:n]


def test_mmdiffusion_draws_exactly_the_videoclips_windows_of_a_built_dataset(demo_dataset):
    src = parse_source(f"{demo_dataset}:train:64")
    truth = _lengths_from_tars(demo_dataset, "train", 64)
    assert list_clips(src) == truth and len(truth) >= 2
    n_windows = sum(max(0, n - 15) for _, n in truth)
    for seed, limit in ((0, 2048), (1, 2048), (7, 25)):
        want = [(truth[v][0], s) for v, s in _videoclips_then_shuffle([n for _, n in truth], seed, limit)]
        got = draw_windows(PROTOCOLS["mmdiffusion"], list_clips(src), seed, limit)
        assert got == want
        assert len(got) == min(limit, n_windows)
    # the seed matters (the original's shuffle is unseeded: we record ours)
    assert draw_windows(PROTOCOLS["mmdiffusion"], truth, 0, 50) != draw_windows(PROTOCOLS["mmdiffusion"], truth, 1, 50)


def test_windows_are_read_at_the_drawn_offsets_and_short_clips_are_left_out(root):
    src = parse_source(f"{root}:train")
    clips = list_clips(src)
    assert sorted(n for _, n in clips) == sorted(n for ns in SOURCES.values() for n in ns)
    windows = draw_windows(PROTOCOLS["mmdiffusion"], clips, 5, 2048)
    assert len(windows) == sum(n - 15 for _, n in clips if n >= 16) == 5 + 1 + 16 + 2
    short = [k for k, n in clips if n < 16]
    assert short and not any(k in short for k, _ in windows)
    picked = windows[:6]
    read = list(iter_windows(src, picked, 16, workers=2))
    assert len(read) == 6 and any(start > 0 for _, start in picked)
    for clip, (key, start) in zip(read, picked):
        assert (clip.key, clip.start) == (key, start)
        grey = [round(float(f[:, 12:28].mean())) for f in clip.frames]  # right of the white bar
        assert all(abs(g - level(start + k)) <= 3 for k, g in enumerate(grey)), (key, start, grey)
        audio_levels = clip.audio.reshape(16, 1600).mean(axis=1) * 256
        np.testing.assert_allclose(audio_levels, [level(start + k) for k in range(16)], atol=0.5)


def test_styleganv_one_seeded_window_per_video_stable_per_key():
    clips = [(f"v{i}", n) for i, n in enumerate([40, 15, 16, 100, 3, 64])]
    p = PROTOCOLS["styleganv"]
    w = draw_windows(p, clips, 0, 2048)
    assert [k for k, _ in w] == ["v0", "v2", "v3", "v5"]  # videos shorter than 16 frames are dropped
    lengths = dict(clips)
    assert all(0 <= s <= lengths[k] - 16 for k, s in w) and dict(w)["v2"] == 0
    assert draw_windows(p, clips, 0, 2048) == w
    assert draw_windows(p, clips, 1, 2048) != w  # seeded: another seed, other windows (v3 has 85 choices)
    # a clip's window does not depend on the other clips
    assert dict(draw_windows(p, clips[3:], 0, 2048))["v3"] == dict(w)["v3"]
    assert draw_windows(p, clips, 0, 2) == w[:2]


def test_avbench_protocol_is_frame_zero_of_each_clip_in_order():
    clips = [("a", 40), ("b", 16), ("c", 20)]
    assert draw_windows(PROTOCOLS["avbench"], clips, 9, 2) == [("a", 0), ("b", 0)]


def test_mmdiffusion_uint8_round_trip_truncates_like_its_evaluator():
    levels = np.arange(256, dtype=np.uint8)
    frames = np.broadcast_to(levels[None, None, :, None], (16, 64, 256, 3)).copy()
    # the 256-wide strip is letterboxed into 64×64 first (what MM-Diffusion's loader does before the round trip)
    wide = to_protocol_uint8(frames, PROTOCOLS["mmdiffusion"])
    assert wide.shape == (16, 64, 64, 3)
    square = np.broadcast_to(levels.reshape(16, 16)[None, :, :, None], (1, 16, 16, 3))
    square = np.repeat(np.repeat(square, 4, axis=1), 4, axis=2)  # 64×64, no resize
    out = to_protocol_uint8(square, PROTOCOLS["mmdiffusion"])[0, ::4, ::4, 0].reshape(-1)
    # numpy float32: x = u / 127.5 - 1, back as (x + 1) * 127.5, cast by truncation
    x = levels.astype(np.float32) / np.float32(127.5) - np.float32(1)
    want = np.clip((x + np.float32(1)) * np.float32(127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    lowered = levels[out != levels]
    assert len(lowered) == 63 and 1 in lowered and np.all(levels[lowered] - out[lowered] == 1)
    assert out[0] == 0 and out[255] == 255
    one = square[0]
    assert to_protocol_uint8(one, PROTOCOLS["avbench"]) is one  # the default leaves frames alone


def test_mmdiffusion_frechet_agrees_with_float64_and_is_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 24)) @ rng.normal(size=(24, 24))
    y = rng.normal(0.3, 1.1, size=(500, 24)) @ rng.normal(size=(24, 24))
    exact = frechet_distance_from_features(x, y, ddof=1)
    got = frechet_mmdiffusion(x, y)
    assert got == pytest.approx(exact, rel=1e-4)
    assert got != exact  # computed in float32, not the float64 path
    assert abs(frechet_mmdiffusion(x, x)) < 1e-3 * exact


def _names(tar_path) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return tar.getnames()


def _eval(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_mmdiffusion_protocol_refuses_another_fvd_profile_and_unknown_protocols(root, tmp_path):
    gen = make_sample_folder(tmp_path / "gen", 2, "a")
    res = _eval("--samples", gen, "--reference", f"{root}:train", "--protocol", "mmdiffusion", "--fvd",
                "--fvd-profile", "tf", "--results-dir", tmp_path / "r")
    assert res.exit_code == 2 and "fixes the FVD profile 'mmdiffusion'" in res.output
    res = _eval("--samples", gen, "--reference", f"{root}:train", "--protocol", "nope", "--av-align",
                "--results-dir", tmp_path / "r")
    assert res.exit_code == 2 and "unknown eval protocol 'nope'" in res.output


def test_mmdiffusion_split_check_names_the_train_split(demo_dataset, tmp_path):
    gen = make_sample_folder(tmp_path / "gen", 2, "a")
    res = _eval("--samples", gen, "--reference", f"{demo_dataset}:test:64", "--protocol", "mmdiffusion", "--av-align",
                "--results-dir", tmp_path / "r")
    assert res.exit_code == 2
    assert f"pass --reference {demo_dataset}:train" in res.output and len(res.output.strip().splitlines()) == 1


def test_eval_records_the_protocol_and_scores_the_drawn_reference_windows(root, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    gen = make_sample_folder(tmp_path / "gen", 3, "a")

    def common(seed):
        return ["--samples", gen, "--reference", f"{root}:train", "--protocol", "mmdiffusion", "--fad",
                "--allow-random-vggish", "--allow-small", "--num-clips", 6, "--seed", seed,
                "--results-dir", tmp_path / "r", "--device", "cpu"]

    res = _eval("--name", "m1", *common(11))
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r" / "m1.json").read_text())
    assert rec["protocol"]["name"] == "mmdiffusion" and rec["protocol"]["seed"] == 11
    assert rec["protocol"]["num_clips"] == 6 and rec["overrides"]["num_clips"] == 6
    assert rec["counts"]["reference_clips"] == 6 and rec["reference_windows"] == 6
    truth = _lengths_from_tars(root, "train", 32)
    want = [(truth[v][0], s) for v, s in _videoclips_then_shuffle([n for _, n in truth], 11, 6)]
    assert rec["reference_fingerprint"] == reference_fingerprint(parse_source(f"{root}:train"), want)
    # a cache hit reports the same fingerprint; another seed draws other windows, hence another fingerprint
    res = _eval("--name", "m2", *common(11))
    rec2 = json.loads((tmp_path / "r" / "m2.json").read_text())
    assert rec2["reference_cache"] == "hit" and rec2["reference_fingerprint"] == rec["reference_fingerprint"]
    res = _eval("--name", "m3", *common(12))
    assert res.exit_code == 0, res.output
    rec3 = json.loads((tmp_path / "r" / "m3.json").read_text())
    assert rec3["reference_cache"] == "miss" and rec3["reference_fingerprint"] != rec["reference_fingerprint"]


def test_fingerprint_changes_with_the_bytes(root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    src, windows = parse_source(f"{copy}:train"), [("synth-3-0_00002000", 0), ("synth-3-2_00002000", 1)]
    before = reference_fingerprint(src, windows)
    assert before == reference_fingerprint(parse_source(f"{root}:train"), windows)
    assert reference_fingerprint(src, windows[:1]) != before
    target = f"{windows[0][0]}.flac"
    tar_path = next(p for p in (copy / "shards").rglob("*.tar") if target in _names(p))
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:  # one byte of one FLAC changed, everything else as it was
        for m, data in members:
            if m.name == target:
                data = data[:-1] + bytes([data[-1] ^ 1])
            tar.addfile(m, io.BytesIO(data))
    assert reference_fingerprint(parse_source(f"{copy}:train"), windows) != before


def test_styleganv_eval_scores_one_window_per_long_enough_clip(root, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    gen = make_sample_folder(tmp_path / "gen", 2, "b")
    res = _eval("--samples", gen, "--reference", f"{root}:train", "--protocol", "styleganv", "--fad",
                "--allow-random-vggish", "--allow-small", "--seed", 2, "--results-dir", tmp_path / "r", "--name", "s")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r" / "s.json").read_text())
    assert rec["protocol"]["name"] == "styleganv" and rec["protocol"]["seed"] == 2 and "num_clips" not in rec["overrides"]
    long_enough = [(k, n) for k, n in _lengths_from_tars(root, "train", 32) if n >= 16]
    assert rec["reference_windows"] == rec["counts"]["reference_clips"] == len(long_enough) == 4
    src = parse_source(f"{root}:train")
    want = draw_windows(PROTOCOLS["styleganv"], long_enough, 2, 2048)
    assert [k for k, _ in want] == [k for k, _ in long_enough]
    assert rec["reference_fingerprint"] == reference_fingerprint(src, want)
