"""Shard stage: tar layout, provenance JSON, reproducible bytes, leak-free salted splits, stats."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
import soundfile as sf
from support.shardkit import encode_clip_flac, make_root

from avbench.curate.shard import ShardConfig, load_index, shard_dataset
from avbench.curate.spec import SplitPolicy, parse_spec
from avbench.curate.split import assign_split

SOURCES = {f"synth-3-{i}": [17, 24] for i in range(8)}


def _spec(**split):
    return parse_spec({
        "name": "t", "description": "shard test", "target_hours": 0.01,
        "sources": [{"kind": "synthetic", "count": 8, "seed": 3}],
        "output": {"sizes": [32], "samples_per_shard": 3},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "salt": "s1", **split},
    })


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("clips"), SOURCES, filtered={"synth-3-2_00002000": "silence"},
                     failed=("url-0123456789ab",))


def _members(tar_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return tar.getmembers()


def test_shard_layout_members_and_provenance(clip_root, tmp_path):
    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    summary = shard_dataset(_spec(), root)
    index = load_index(root)
    assert index["samples_per_shard"] == {"32": 3}
    assert sum(r["samples"] for r in index["shards"]) == 15  # 16 clips, one filtered
    for row in index["shards"]:
        path = root / "shards" / row["path"]
        assert path.parent == root / "shards" / "32" / row["split"]
        assert path.name.startswith(f"{row['split']}-32-") and path.suffix == ".tar"
        assert path.stat().st_size == row["bytes"]
        members = _members(path)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "avbench" for m in members)
        keys = [m.name.split(".", 1)[0] for m in members]
        exts = [m.name.split(".", 1)[1] for m in members]
        assert all("." not in k for k in keys)
        assert len(members) == 3 * row["samples"] and set(exts) == {"mp4", "flac", "json"}
    # every shard but the last of a split is full
    by_split = defaultdict(list)
    for row in index["shards"]:
        by_split[row["split"]].append(row["samples"])
    for counts in by_split.values():
        assert all(c == 3 for c in counts[:-1]) and 1 <= counts[-1] <= 3

    with tarfile.open(root / "shards" / index["shards"][0]["path"]) as tar:
        meta_member = next(m for m in tar.getmembers() if m.name.endswith(".json"))
        meta = json.loads(tar.extractfile(meta_member).read())
    assert meta["key"] == meta_member.name[: -len(".json")]
    assert meta["source"]["sha256"] and meta["source"]["url"].startswith("synthetic://")
    assert meta["video"] == {"fps": 10, "size": 32, "frames": meta["clip"]["frames"], "resize": "center-crop"}
    assert meta["audio"]["samples"] == 1600 * meta["video"]["frames"]
    assert meta["spec"]["hash"] == _spec().spec_hash and meta["versions"]["av"]
    assert {"start_s", "end_s"} <= set(meta["clip"])
    assert summary.sources_failed == {"download": 1}


def test_shards_are_byte_identical_across_roots_and_reruns(clip_root, tmp_path):
    a = Path(shutil.copytree(clip_root, tmp_path / "a"))
    b = Path(shutil.copytree(clip_root, tmp_path / "b"))
    shard_dataset(_spec(), a)
    shard_dataset(_spec(), b)
    first = (a / "shards" / "index.json").read_bytes()
    assert first == (b / "shards" / "index.json").read_bytes()
    assert (a / "shards" / "stats.json").read_bytes() == (b / "shards" / "stats.json").read_bytes()
    shard_dataset(_spec(), a)  # rerun in place
    assert (a / "shards" / "index.json").read_bytes() == first


def test_no_source_in_two_splits_and_salt_moves_sources(clip_root, tmp_path):
    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    splits_by_salt = {}
    for salt in ("s1", "s2"):
        shard_dataset(_spec(salt=salt), root)
        src_split = {}
        for row in load_index(root)["shards"]:
            with tarfile.open(root / "shards" / row["path"]) as tar:
                for m in tar.getmembers():
                    if m.name.endswith(".json"):
                        sid = json.loads(tar.extractfile(m).read())["source"]["source_id"]
                        assert src_split.setdefault(sid, row["split"]) == row["split"], f"{sid} leaks"
        splits_by_salt[salt] = src_split
    assert splits_by_salt["s1"] != splits_by_salt["s2"]
    assert set(splits_by_salt["s1"]) == set(SOURCES)


def test_split_fractions_follow_the_policy():
    policy = SplitPolicy(train=0.9, val=0.05, test=0.05, salt="avbench-v1")
    ids = [f"url-{i:012x}" for i in range(4000)]
    counts = defaultdict(int)
    for sid in ids:
        counts[assign_split(sid, policy)] += 1
    assert abs(counts["train"] / 4000 - 0.9) < 0.02
    assert abs(counts["val"] / 4000 - 0.05) < 0.015 and abs(counts["test"] / 4000 - 0.05) < 0.015


def test_stats_count_filtered_clips_and_failed_sources(clip_root, tmp_path):
    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    shard_dataset(_spec(), root)
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert stats["total"]["clips_kept"] == 15 and stats["total"]["clips_filtered"] == 1
    assert stats["total"]["filtered_by_reason"] == {"silence": 1}
    assert stats["sources"]["failed_by_stage"] == {"download": 1}
    assert stats["total"]["hours_out"] == pytest.approx(8 * 41 / 10 / 3600 - 1.7 / 3600, abs=1e-5)
    assert stats["total"]["hours_in"] == pytest.approx(8 * (4.1 + 2.0) / 3600, abs=1e-5)
    assert sum(s["sources"] for s in stats["splits"].values()) == 8


def test_misaligned_clip_is_reported_not_sharded(clip_root, tmp_path):
    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    bad = root / "clips" / "synth-3-0" / "synth-3-0_00002000.flac"
    bad.write_bytes(encode_clip_flac(16))  # 16 frames of audio for a 17-frame clip
    summary = shard_dataset(_spec(), root)
    assert len(summary.clip_errors) == 1 and "synth-3-0_00002000" in summary.clip_errors[0]
    assert "rerun resample" in summary.clip_errors[0]
    assert sum(r["samples"] for r in load_index(root)["shards"]) == 14
    assert sf.info(str(bad)).frames == 16 * 1600


def test_stale_shards_are_removed_and_index_is_the_marker(clip_root, tmp_path):
    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    shard_dataset(_spec(), root, ShardConfig(samples_per_shard=1))
    many = len(list((root / "shards").rglob("*.tar")))
    shard_dataset(_spec(), root)
    rows = load_index(root)["shards"]
    assert len(list((root / "shards").rglob("*.tar"))) == len(rows) < many
    (root / "shards" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="run `avbench shard"):
        load_index(root)


def test_webdataset_reads_the_shards(clip_root, tmp_path):
    import webdataset as wds

    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    shard_dataset(_spec(), root)
    urls = [str(root / "shards" / r["path"]) for r in load_index(root)["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 15
    assert all({"mp4", "flac", "json"} <= set(s) for s in samples)
    assert len({s["__key__"] for s in samples}) == 15


def test_a_clip_missing_one_size_is_left_out_at_every_size(tmp_path):
    root = make_root(tmp_path / "r", {"synth-4-0": [16, 18], "synth-4-1": [20]}, sizes=(32, 48))
    (root / "clips" / "synth-4-0" / "synth-4-0_00003600.48.mp4").unlink()
    spec = parse_spec({"name": "t", "description": "two sizes", "target_hours": 0.01,
                       "sources": [{"kind": "synthetic", "count": 2, "seed": 4}],
                       "output": {"sizes": [32, 48], "samples_per_shard": 8},
                       "split": {"train": 1.0, "val": 0.0, "test": 0.0}})
    summary = shard_dataset(spec, root)
    assert len(summary.clip_errors) == 1 and "synth-4-0_00003600.48.mp4" in summary.clip_errors[0]
    assert summary.samples == {"32/train": 2, "32/val": 0, "32/test": 0, "48/train": 2, "48/val": 0, "48/test": 0}
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert stats["total"]["clips_kept"] == 2


def test_shard_command(clip_root, tmp_path):
    from typer.testing import CliRunner

    from avbench.cli import app

    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "t"\ndescription = "d"\ntarget_hours = 0.01\n[[sources]]\nkind = "synthetic"\n'
                    'count = 8\nseed = 3\n[output]\nsizes = [32]\n[split]\ntrain = 0.5\nval = 0.25\ntest = 0.25\n')
    res = CliRunner().invoke(app, ["shard", str(spec), "--root", str(root), "--samples-per-shard", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "shard: " in res.output and "32/train" in res.output
    assert load_index(root)["samples_per_shard"] == {"32": 2}
    (root / "clips" / "synth-3-1" / "synth-3-1_00002000.32.mp4").unlink()
    res = CliRunner().invoke(app, ["shard", str(spec), "--root", str(root), "--no-progress"])
    assert res.exit_code == 1 and "synth-3-1_00002000" in res.output and "rerun resample" in res.output


def test_the_shard_stage_removes_the_temp_files_a_kill_left(clip_root, tmp_path):
    from avbench.curate.shard import ShardStage
    from avbench.curate.stage import run_stage

    root = Path(shutil.copytree(clip_root, tmp_path / "r"))
    leftovers = [root / "shards" / "32" / "train" / ".tmp-train-32-000000.tar.k9x.tar",
                 root / "shards" / ".tmp-index.json.p2q.json"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    summary = run_stage(ShardStage(_spec()), root, workers=1, progress=False)
    assert summary.done == 1 and summary.results["shards"]["shards"] >= 1
    assert not any(p.exists() for p in leftovers)
    assert load_index(root)["shards"]
