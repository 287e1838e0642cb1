"""The Stage protocol's executor: skipping, cleanup, failure records, classes, order, threads/processes."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from support.stagekit import EchoStage

from avbench.curate.partition import Partition
from avbench.curate.stage import failure_path, run_stage

IDS = ("a", "bug-1", "c", "perm-1", "trans-1", "b")


@pytest.mark.parametrize("parallelism, workers", [("processes", 2), ("threads", 3), ("processes", 1)])
def test_run_stage_records_failures_and_returns_results_in_order(tmp_path, parallelism, workers):
    stage = replace(EchoStage(IDS), parallelism=parallelism)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".tmp-c").write_text("left by a kill")
    s = run_stage(stage, tmp_path, workers=workers, progress=False)
    assert (s.total, s.done, s.failed, s.skipped) == (6, 3, 3, 0)
    assert list(s.results) == ["a", "b", "c"]  # the jobs' order (sorted), whatever finished first
    assert (s.permanent, s.transient) == (2, 1)
    assert not (tmp_path / "out" / ".tmp-c").exists()
    pids = {r["pid"] for r in s.results.values()}
    assert (os.getpid() in pids) == (parallelism == "threads" or workers == 1)
    rec = json.loads(failure_path(tmp_path, "echo", "perm-1").read_text())
    assert rec == {"source_id": "perm-1", "stage": "echo", "status": "failed", "error_class": "permanent",
                   "error": "perm-1: cannot be used"}  # one line
    assert json.loads(failure_path(tmp_path, "echo", "trans-1").read_text())["error_class"] == "transient"
    assert json.loads(failure_path(tmp_path, "echo", "bug-1").read_text())["error"] == "KeyError: 'no such thing'"


def test_done_jobs_are_skipped_and_a_success_clears_the_old_failure(tmp_path):
    first = run_stage(EchoStage(("a", "perm-x")), tmp_path, workers=1, progress=False)
    assert first.failed == 1 and failure_path(tmp_path, "echo", "perm-x").exists()
    # the source is fixed (here: renamed into a good id of the same record) → the old record goes
    failure_path(tmp_path, "echo", "x").parent.mkdir(parents=True, exist_ok=True)
    failure_path(tmp_path, "echo", "x").write_text("{}")
    again = run_stage(EchoStage(("a", "x")), tmp_path, workers=1, progress=False)
    assert (again.skipped, again.done, again.failed) == (1, 1, 0)
    assert not failure_path(tmp_path, "echo", "x").exists()


def test_partitions_split_the_jobs_and_unknown_parallelism_is_refused(tmp_path):
    ids = tuple(f"s{i}" for i in range(7))
    seen = []
    for i in range(3):
        s = run_stage(EchoStage(ids), tmp_path, Partition(i, 3), workers=1, progress=False)
        assert s.failed == 0 and s.skipped == 0
        seen += list(s.results)
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    with pytest.raises(ValueError, match="parallelism"):
        run_stage(replace(EchoStage(ids), parallelism="gpu"), tmp_path, progress=False)
