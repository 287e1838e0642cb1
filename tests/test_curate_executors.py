"""The Ray executor against a REAL local Ray: the local executor's bookkeeping (skips, cleanup, failure
records, order), a crashed worker, the demo built through Ray byte-identical to the local build, and a
SIGKILLed Ray build resumed to the same bytes. Skipped when Ray is not installed (the `ray` extra)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.stagekit import EchoStage
from typer.testing import CliRunner

from avbench.cli import app
from avbench.curate.build import BuildConfig, build_dataset
from avbench.curate.executors import open_executor, ray_dispatch
from avbench.curate.partition import Partition
from avbench.curate.stage import Job, failure_path, run_stage
from avbench.errors import ToolMissingError

TESTS = Path(__file__).resolve().parent
IDS = ("a", "bug-1", "c", "perm-1", "trans-1", "b")


@pytest.fixture(scope="module")
def ray_session():
    """One real local Ray for the module (starting one takes seconds); its workers import the test
    helpers (support.stagekit, this module's stages) as a cluster's nodes import an installed avbench."""
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             logging_level="ERROR", runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class CrashStage:
    """Job "die" kills its worker process outright (as the OOM killer would); the others succeed."""

    name: str = "crash"
    parallelism: str = "processes"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        return [Job(i, False, i) for i in ("die", "live")]

    def run(self, job: Job) -> dict:
        if job.arg == "die":
            os._exit(9)
        return {"pid": os.getpid()}

    def cleanup(self, root: Path, job: Job) -> None:
        pass


def _records(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "failures").rglob("*.json"))}


@pytest.mark.parametrize("parallelism, workers", [("processes", 0), ("threads", 1)])
def test_ray_keeps_the_local_bookkeeping(ray_session, tmp_path, parallelism, workers):
    stage = replace(EchoStage(IDS), parallelism=parallelism)
    local, remote = tmp_path / "local", tmp_path / "ray"
    for root in (local, remote):
        (root / "out").mkdir(parents=True)
        (root / "out" / ".tmp-c").write_text("left by a kill")  # EchoStage fails a job whose temp file is left
    a = run_stage(stage, local, workers=2, progress=False)
    b = run_stage(stage, remote, workers=workers, progress=False, dispatch=ray_dispatch)
    assert (b.total, b.done, b.failed, b.skipped, b.permanent, b.transient) == (6, 3, 3, 0, 2, 1)
    assert list(b.results) == ["a", "b", "c"]  # the jobs' order, whatever finished first
    assert {r["id"] for r in b.results.values()} == {"a", "b", "c"}
    assert os.getpid() not in {r["pid"] for r in b.results.values()}  # ran in Ray workers
    assert b.failures == a.failures and b.failure_classes == a.failure_classes
    assert _records(remote) == _records(local) and len(_records(remote)) == 3  # the same failure records
    again = run_stage(stage, remote, workers=workers, progress=False, dispatch=ray_dispatch)
    assert (again.skipped, again.done, again.failed) == (3, 0, 3)  # done jobs are not sent to Ray again


def test_a_crashed_ray_worker_is_a_transient_failure_and_the_rest_go_on(ray_session, tmp_path):
    s = run_stage(CrashStage(), tmp_path, progress=False, dispatch=ray_dispatch)
    assert s.done == 1 and list(s.results) == ["live"]
    assert s.failure_classes == {"die": "transient"} and s.failures["die"].startswith("worker crashed: ")
    rec = json.loads(failure_path(tmp_path, "crash", "die").read_text())
    assert rec["error_class"] == "transient" and "\n" not in rec["error"]


def _assert_same_shards(root: Path, reference: Path) -> None:
    for name in ("index.json", "stats.json"):
        assert (root / "shards" / name).read_bytes() == (reference / "shards" / name).read_bytes(), name
    rows = json.loads((reference / "shards" / "index.json").read_text())["shards"]
    assert rows
    for row in rows:  # the tars themselves, not only their checksums in the index
        assert (root / "shards" / row["path"]).read_bytes() == (reference / "shards" / row["path"]).read_bytes()


def test_demo_built_through_ray_is_byte_identical_to_the_local_build(ray_session, demo_dataset, demo_spec,
                                                                       tmp_path):
    root = tmp_path / "ray"
    # in-process: the build reuses the module's Ray instead of starting its own
    res = CliRunner().invoke(app, ["build", str(demo_spec), "--root", str(root), "--executor", "ray",
                                   "--workers", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "0 source(s) failed" in res.output
    _assert_same_shards(root, demo_dataset)
    assert not (root / "failures").exists()


def test_a_sigkilled_ray_build_resumes_to_the_same_bytes(ray_session, demo_dataset, demo_spec, tmp_path):
    root = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, as a user's would
    # one task at a time, so that the kill lands between two sources' markers on any number of cores
    cmd = [sys.executable, "-m", "avbench", "build", str(demo_spec), "--root", str(root), "--executor", "ray",
           "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 180
    markers = lambda: list(root.glob("clips/*/clips.json"))
    while time.time() < deadline and proc.poll() is None and not markers():
        time.sleep(0.05)
    assert proc.poll() is None, "the Ray build finished before it could be killed: " + proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started (same process group)
    proc.wait()
    done = {p.parent.name for p in markers()}
    assert 1 <= len(done) < 5, f"kill came too late: {sorted(done)}"
    assert not (root / "shards" / "index.json").exists()

    resumed = build_dataset(BuildConfig(spec=str(demo_spec), root=root, executor="ray", progress=False))
    assert resumed.failed == 0 and resumed.stages["download"]["skipped"] == 5
    assert resumed.stages["resample"]["skipped"] >= len(done)  # finished work is not redone
    _assert_same_shards(root, demo_dataset)


def test_the_executor_is_checked_and_help_imports_no_ray(tmp_path):
    res = CliRunner().invoke(app, ["build", "demo", "--root", str(tmp_path), "--executor", "dask"])
    assert res.exit_code == 2 and "--executor 'dask': choose one of local, ray" in res.output
    assert not (tmp_path / "lock.csv").exists()  # refused before anything ran
    code = ("import sys\nfrom avbench.cli import app\ntry:\n    app(['build', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('RAY' if 'ray' in sys.modules else 'NO-RAY')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--executor" in out and out.strip().endswith("NO-RAY")


def test_a_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    with pytest.raises(ToolMissingError) as err, open_executor("ray"):
        pass
    assert 'pip install -e ".[ray]"' in str(err.value) and "\n" not in str(err.value)
