"""`avbench build`: byte-identical rebuilds, SIGKILL + resume, partitions + merge, bad inputs reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avbench.cli import app
from avbench.curate.build import BuildConfig, build_dataset
from avbench.curate.lock import read_lock
from avbench.curate.partition import Partition


def _index(root: Path) -> dict:
    return json.loads((root / "shards" / "index.json").read_text())


def test_two_builds_give_byte_identical_shards(demo_dataset, demo_spec, tmp_path):
    other = tmp_path / "again"
    build_dataset(BuildConfig(spec=str(demo_spec), root=other, workers=1, progress=False))
    a, b = _index(demo_dataset), _index(other)
    assert [r["sha256"] for r in a["shards"]] == [r["sha256"] for r in b["shards"]]
    assert (demo_dataset / "shards" / "index.json").read_bytes() == (other / "shards" / "index.json").read_bytes()
    assert (demo_dataset / "shards" / "stats.json").read_bytes() == (other / "shards" / "stats.json").read_bytes()
    for row in a["shards"]:  # the tars themselves, not only the index
        assert (other / "shards" / row["path"]).read_bytes() == (demo_dataset / "shards" / row["path"]).read_bytes()


def _complete_markers(root: Path) -> list[Path]:
    return [p for p in (root / "clips").glob("*/clips.json")] if (root / "clips").is_dir() else []


def test_sigkilled_partitioned_build_resumes_to_the_same_bytes(demo_dataset, demo_spec, tmp_path):
    root = tmp_path / "killed"
    # partition 0/2 runs to completion (one SLURM array task)
    s0 = build_dataset(BuildConfig(spec=str(demo_spec), root=root, partition="0/2", workers=1, progress=False))
    assert s0.shard is None and not (root / "shards").exists()  # partitions never shard
    done_before = set(_complete_markers(root))

    # partition 1/2 is killed with SIGKILL as soon as it has finished one source's clips
    cmd = [sys.executable, "-m", "avbench", "build", str(demo_spec), "--root", str(root), "--partition", "1/2",
           "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if set(_complete_markers(root)) - done_before:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "partition 1/2 finished before it could be killed: " + proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # nothing under a final name is partial: every marker and record parses
    for p in list((root / "records").glob("[!.]*.json")) + _complete_markers(root):
        json.loads(p.read_text())
    entries = [e.source_id for e in read_lock(root / "lock.csv")]
    part1 = Partition.parse("1/2").select(entries)
    assert any(not (root / "clips" / sid / "clips.json").exists() for sid in part1), "kill came too late"

    resumed = build_dataset(BuildConfig(spec=str(demo_spec), root=root, partition="1/2", workers=1, progress=False))
    assert resumed.stages["resample"]["skipped"] >= 1  # the killed run's finished source is not redone
    # the merge job: an unpartitioned build checks every marker, fills any gap, and shards
    merged = build_dataset(BuildConfig(spec=str(demo_spec), root=root, workers=1, progress=False))
    assert merged.failed == 0 and merged.stages["download"]["skipped"] == 5
    assert (root / "shards" / "index.json").read_bytes() == (demo_dataset / "shards" / "index.json").read_bytes()


@pytest.fixture(scope="module")
def bad_spec(tmp_path_factory) -> Path:
    from avbench.curate.synthetic import render_synthetic

    d = tmp_path_factory.mktemp("bad")
    render_synthetic(d / "good.mp4", seed=3, duration_s=6.0, width=320, height=180)
    render_synthetic(d / "silent_stream.mp4", seed=4, duration_s=6.0, width=320, height=180, with_audio=False)
    (d / "garbage.mp4").write_bytes(b"<html>not a video</html>" * 100)
    good = (d / "good.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "spec.toml").write_text(
        'name = "bad"\ndescription = "bad inputs"\ntarget_hours = 0.01\n'
        '[[sources]]\nkind = "file"\n'
        'paths = ["good.mp4", "silent_stream.mp4", "garbage.mp4", "truncated.mp4", "missing.mp4"]\n'
        '[clip]\nskip_start_s = 0.5\n[output]\nsizes = [32]\n'
        '[split]\ntrain = 1.0\nval = 0.0\ntest = 0.0\n'
    )
    return d / "spec.toml"


def test_bad_inputs_are_reported_and_the_build_finishes(bad_spec, tmp_path):
    root = tmp_path / "bad"
    runner = CliRunner()
    res = runner.invoke(app, ["build", str(bad_spec), "--root", str(root), "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "4 source(s) failed" in res.output
    failed_lines = [ln for ln in res.output.splitlines() if ln.startswith("failed ")]
    assert len(failed_lines) == 4
    assert all(":" in ln.split(" ", 3)[3] for ln in failed_lines)  # every one has a reason
    assert any("missing.mp4" in ln for ln in failed_lines)
    index = _index(root)
    assert sum(r["samples"] for r in index["shards"]) >= 1  # the good source made it into the shards
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert stats["sources"]["ready"] == 1
    assert sum(stats["sources"]["failed_by_stage"].values()) == 4

    again = runner.invoke(app, ["build", str(bad_spec), "--root", str(root), "--workers", "1", "--no-progress",
                                "--strict"])
    assert again.exit_code == 1 and "4 source(s) failed" in again.output
    assert (root / "shards" / "index.json").read_text() == json.dumps(index, sort_keys=True, indent=2) + "\n"


def test_build_rejects_a_bad_spec_in_one_line(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "x"\ndescription = "d"\ntarget_hours = 1\n[[sources]]\nkind = "synthetic"\nnope = 1\n')
    res = CliRunner().invoke(app, ["build", str(bad), "--root", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "unknown key 'nope'" in res.output and str(bad) in res.output


def test_a_build_in_which_every_source_failed_is_told_apart(tmp_path):
    from avbench.errors import EXIT_FAILED

    (tmp_path / "a.mp4").write_bytes(b"<html>not a video</html>" * 100)
    (tmp_path / "b.mp4").write_bytes(b"\x00" * 5000)
    spec = tmp_path / "allbad.toml"
    spec.write_text('name = "allbad"\ndescription = "every source fails"\ntarget_hours = 0.01\n'
                    '[[sources]]\nkind = "file"\npaths = ["a.mp4", "b.mp4"]\n[output]\nsizes = [32]\n')
    summary = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "r", workers=1, progress=False))
    assert summary.sources == 2 and summary.failed == 2
    assert summary.nothing_built and summary.exit_code() == EXIT_FAILED
    assert summary.shard is not None and summary.shard.shards == 0
    assert any("nothing was built" in line for line in summary.lines())
    # a rerun skips the permanently failed downloads, and still knows that they failed
    again = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "r", workers=1, progress=False))
    assert again.stages["download"]["skipped"] == 2 and again.failed == 2 and again.nothing_built
    res = CliRunner().invoke(app, ["build", str(spec), "--root", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == EXIT_FAILED, res.output


def test_a_build_whose_clips_were_all_filtered_wrote_no_shard(tmp_path):
    from avbench.curate.synthetic import render_synthetic
    from avbench.errors import EXIT_FAILED, EXIT_OK

    render_synthetic(tmp_path / "s.mp4", seed=5, duration_s=6.0, width=160, height=90)
    spec = tmp_path / "filtered.toml"
    text = ('name = "filtered"\ndescription = "all clips filtered"\ntarget_hours = 0.01\n'
            '[[sources]]\nkind = "file"\npaths = ["s.mp4"]\n[clip]\nskip_start_s = 0.0\n[output]\nsizes = [32]\n'
            '[split]\ntrain = 1.0\nval = 0.0\ntest = 0.0\n')
    spec.write_text(text + "[filters]\nsilence_dbfs = 10.0\nsilence_fraction = 0.0\n")  # every clip is "silent"
    summary = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "r", workers=1, progress=False))
    assert summary.failed == 0 and summary.shard.shards == 0
    assert summary.nothing_built and summary.exit_code() == EXIT_FAILED
    spec.write_text(text)
    ok = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "r2", workers=1, progress=False))
    assert not ok.nothing_built and ok.exit_code() == EXIT_OK
