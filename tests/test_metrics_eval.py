"""`avbench eval` end to end on real mp4/wav folders written with PyAV, plus leaderboard export."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from avbench.cli import app
from avbench import weights
from avbench.metrics import leaderboard

from support.evalkit import SR, make_clip, make_sample_folder, write_av_mp4  # noqa: F401


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalsets")
    return make_sample_folder(base / "gen", 3, "a"), make_sample_folder(base / "ref", 3, "b", seed0=100)


def _eval(*args):
    res = CliRunner().invoke(app, ["eval", *map(str, args)])
    return res


def test_eval_records_cache_zero_for_identical_sets_and_export(folders, i3d_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    gen, ref = folders
    common = ["--reference", ref, "--fvd", "--kvd", "--fad", "--num-clips", 2, "--allow-small", "--allow-random-vggish",
              "--i3d-weights", i3d_ckpt, "--results-dir", tmp_path / "results", "--device", "cpu"]
    first = _eval("--samples", gen, "--name", "run1", *common)
    assert first.exit_code == 0, first.output
    r1 = json.loads((tmp_path / "results" / "run1.json").read_text())
    assert r1["scores"]["fvd"] > 1.0 and r1["scores"]["fad"] > 0 and "kvd" in r1["scores"]
    assert r1["protocols"]["fvd"]["profile"]["name"] == "tf"
    assert r1["protocols"]["fvd"]["weights_sha256"] == weights.REGISTRY["i3d"].sha256
    assert r1["protocols"]["fad"]["random_weights"] is True
    assert any("RANDOM" in w for w in r1["warnings"]) and r1["overrides"]["fvd_allow_small"] is True
    assert r1["counts"] == {"generated_clips": 2, "reference_clips": 2, "read_errors": 0}
    assert r1["avbench_version"] and r1["date"] and "git_commit" in r1
    assert r1["reference_cache"] == "miss"
    assert len(list((tmp_path / "cache" / "refstats").glob("*.npz"))) == 2  # i3d + vggish features
    # the reference set scored against itself: its features come from the cache, the distances are ≈ 0
    second = _eval("--samples", ref, "--name", "run2", *common)
    assert second.exit_code == 0, second.output
    r2 = json.loads((tmp_path / "results" / "run2.json").read_text())
    assert r2["reference_cache"] == "hit"
    assert abs(r2["scores"]["fvd"]) < 1e-6 and abs(r2["scores"]["fad"]) < 1e-6

    out = CliRunner().invoke(app, ["leaderboard", "export", "--results-dir", tmp_path / "results",
                                   "--csv", tmp_path / "lb.csv", "--markdown", tmp_path / "lb.md"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader((tmp_path / "lb.csv").open()))
    assert sorted(r["name"] for r in rows) == ["run1", "run2"]
    assert list(rows[0]) == leaderboard.COLUMNS
    row1 = next(r for r in rows if r["name"] == "run1")
    assert row1["fvd_profile"] == "tf" and row1["fad_random_weights"] == "True"
    assert float(row1["fvd"]) == pytest.approx(r1["scores"]["fvd"], rel=1e-5)
    md = (tmp_path / "lb.md").read_text().splitlines()
    assert md[0] == "### No track · protocol avbench"
    table = [line for line in md if line.startswith("|")]
    assert table[0].startswith("| name | fvd (avbench) | kvd (avbench) | fad (avbench)") and len(table) == 4


def test_too_few_clips_is_an_error_without_override(folders, i3d_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    gen, ref = folders
    res = _eval("--samples", gen, "--reference", ref, "--fvd", "--num-clips", 2, "--i3d-weights", i3d_ckpt,
                "--results-dir", tmp_path / "results", "--device", "cpu")  # refused before any extraction
    assert res.exit_code == 2
    assert "feature dimension 400" in res.output and "--allow-small" in res.output
    assert not (tmp_path / "results").exists()


def test_missing_vggish_weights_without_random_flag_names_the_fix(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_VGGISH_WEIGHTS", raising=False)
    gen, ref = folders
    res = _eval("--samples", gen, "--reference", ref, "--fad", "--results-dir", tmp_path / "r")
    assert res.exit_code == 2
    assert "vggish-10086976.pth" in res.output and "AVBENCH_VGGISH_WEIGHTS" in res.output


def test_broken_sample_file_is_recorded_and_the_rest_still_count(folders, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    gen, ref = folders
    broken = tmp_path / "broken"
    shutil.copytree(gen, broken)
    (broken / "video" / "1.mp4").write_bytes(b"garbage")
    res = _eval("--samples", broken, "--reference", ref, "--fad", "--allow-small", "--allow-random-vggish",
                "--results-dir", tmp_path / "r", "--name", "b")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r" / "b.json").read_text())
    assert rec["counts"]["generated_clips"] == 2 and rec["counts"]["read_errors"] == 1
    assert "1.mp4" in rec["errors"][0]


def test_dataset_splits_end_to_end(request, i3d_ckpt, tmp_path, monkeypatch):
    try:
        root = request.getfixturevalue("demo_dataset")
    except pytest.FixtureLookupError:
        pytest.skip("demo_dataset fixture (tests/conftest.py, processing helper) not available in this checkout")
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    res = _eval("--samples", f"{root}:train:64", "--reference", f"{root}:test:64", "--fvd", "--kvd", "--fad",
                "--num-clips", 2, "--allow-small", "--allow-random-vggish", "--i3d-weights", i3d_ckpt,
                "--results-dir", tmp_path / "results", "--name", "demo", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert rec["reference"]["kind"] == "dataset" and rec["reference"]["split"] == "test"
    assert rec["dataset_spec_hash"]
    assert np.isfinite(rec["scores"]["fvd"]) and rec["scores"]["fvd"] > 0
    assert rec["counts"]["generated_clips"] >= 2 and rec["counts"]["reference_clips"] >= 2


def test_dataset_split_source_reads_the_loader_in_fixed_order(tmp_path, monkeypatch):
    """A dataset root built by the real shard stage (clips from tests/shardkit.py), read as DIR:split."""
    import dataclasses
    from support.shardkit import make_root

    from avbench.curate.shard import ShardConfig, shard_dataset
    from avbench.curate.spec import load_spec
    from avbench.io import sha256_bytes
    from avbench.metrics.sources import iter_clips, parse_source

    root = tmp_path / "ds"
    ids = [f"synth-0-{i}" for i in range(8)]
    make_root(root, {i: [18, 16] for i in ids}, sizes=(32,))
    for i in ids:  # the download stage's content-addressed source files
        (root / "sources").mkdir(exist_ok=True)
        (root / "sources" / f"{sha256_bytes(i.encode())}.mp4").write_bytes(i.encode())
    spec = load_spec("demo")
    spec = dataclasses.replace(spec, output=dataclasses.replace(spec.output, sizes=(32,)))
    shard_dataset(spec, root, ShardConfig(sizes=(32,)))

    src = parse_source(f"{root}:train")
    assert src.kind == "dataset" and src.size == 32 and src.meta["dataset_spec_hash"] == spec.spec_hash
    seq = list(iter_clips(src, 16, limit=6, workers=0))
    par = list(iter_clips(src, 16, limit=6, workers=2))
    assert [c.key for c in seq] == [c.key for c in par] and len(seq) >= 2
    assert seq[0].frames.shape == (16, 32, 32, 3) and seq[0].audio.shape == (25600,) and seq[0].sample_rate == 16000
    np.testing.assert_array_equal(seq[0].frames, par[0].frames)
    # the same tars read as a plain shard folder give the same windows
    shards = parse_source(str(root / "shards" / "32" / "train"))
    assert shards.kind == "shards"
    by_key = {c.key: c for c in iter_clips(shards, 16)}
    assert set(by_key) >= {c.key for c in seq}
    np.testing.assert_array_equal(by_key[seq[0].key].frames, seq[0].frames)
    np.testing.assert_allclose(by_key[seq[0].key].audio, seq[0].audio, atol=1e-6)

    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    res = _eval("--samples", f"{root}:train", "--reference", f"{root}:test", "--fad", "--allow-small",
                "--allow-random-vggish", "--results-dir", tmp_path / "results", "--name", "ds", "--workers", 0)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "results" / "ds.json").read_text())
    assert rec["dataset_spec_hash"] == spec.spec_hash and rec["reference"]["split"] == "test"
    assert np.isfinite(rec["scores"]["fad"])


def test_mmdiffusion_profile_without_port_weights_names_file_and_env(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_I3D_PT_WEIGHTS", raising=False)
    gen, ref = folders
    res = _eval("--samples", gen, "--reference", ref, "--fvd", "--fvd-profile", "mmdiffusion", "--allow-small",
                "--num-clips", 2, "--results-dir", tmp_path / "r")
    assert res.exit_code == 2
    assert "i3d_pretrained_400.pt" in res.output and "AVBENCH_I3D_PT_WEIGHTS" in res.output
