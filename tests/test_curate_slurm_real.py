"""scripts/slurm/build.sbatch submitted to a real single-node SLURM (scripts/slurm/local_cluster.sh).

Real munged, slurmctld and slurmd on localhost: the array job over `--partition i/N` runs the download,
scene-cut and resample stages, the merge job waits on it through afterok and shards, and the shards are
byte for byte those of the local build (the `demo_dataset` fixture, same spec). Skips, naming what is
missing, where SLURM is not installed (Debian: slurm-wlm + munge, which .ci/run installs when it can) or
its daemons cannot start here; once the cluster is up, a failed job or a differing byte fails the test.
tests/test_curate_build_slurm.py keeps covering the script with a stand-in sbatch everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from avbench.paths import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "slurm" / "build.sbatch"
CLUSTER = REPO_ROOT / "scripts" / "slurm" / "local_cluster.sh"
NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "python3")
JOBS_TIMEOUT_S = 240


def _slurm_env(conf: Path) -> dict[str, str]:
    # A test run inside a real SLURM job must not leak that job's ids into the jobs it submits.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["SLURM_CONF"] = str(conf)
    return env


@pytest.fixture(scope="module")
def slurm_conf():
    search = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # where local_cluster.sh looks too
    missing = [cmd for cmd in NEEDED if shutil.which(cmd, path=search) is None]
    if missing:
        pytest.skip(f"real SLURM not installed (not on PATH: {', '.join(missing)}; Debian: apt-get install "
                    "slurm-wlm munge); the stand-in sbatch test still covers build.sbatch")
    # Not under pytest's tmp_path: munged wants every directory above its socket searchable by all,
    # and /tmp/pytest-of-<user> is 0700.
    run_dir = Path(tempfile.mkdtemp(prefix="avbench-slurm-"))
    res = subprocess.run(["bash", str(CLUSTER), "start", str(run_dir)], check=False, capture_output=True, text=True,
                         timeout=180, env=_slurm_env(run_dir / "slurm.conf"))
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines() or ["(no output)"]
        shutil.rmtree(run_dir, ignore_errors=True)
        pytest.skip(f"SLURM daemons could not start here: {lines[-1]}")
    try:
        yield run_dir / "slurm.conf"
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(run_dir)], check=False, capture_output=True, timeout=120,
                       env=_slurm_env(run_dir / "slurm.conf"))
        shutil.rmtree(run_dir, ignore_errors=True)


def _wait_for_jobs(job_ids: list[str], env: dict, logs: Path) -> None:
    """Poll squeue until the jobs left the queue; fail at once on a dependency that can never hold."""
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while True:
        res = subprocess.run(["squeue", "--noheader", "--jobs", ",".join(job_ids), "--format=%i %T %r"],
                             check=False, capture_output=True, text=True, env=env, timeout=30)
        queued = res.stdout.strip()
        if res.returncode == 0 and not queued:
            return
        if "PartitionConfig" in queued:  # would pend forever: asks for more than the node has
            pytest.fail(f"a job asks for more than the node has:\n{queued}")
        if "DependencyNeverSatisfied" in queued:
            pytest.fail(f"the array failed, so the merge job can never start:\n{queued}\n{_logs(logs)}")
        if time.monotonic() > deadline:
            pytest.fail(f"jobs still queued after {JOBS_TIMEOUT_S}s:\n{queued}\n{_logs(logs)}")
        time.sleep(1)


def _job_states(job_id: str, env: dict) -> list[str]:
    # No accounting here (sacct needs slurmdbd); slurmctld keeps finished jobs for MinJobAge (300 s).
    res = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True,
                         env=env, timeout=30, check=True)
    return re.findall(r"JobState=(\S+)", res.stdout)


def _logs(directory: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(directory.glob("*.log")))


def _tar_digests(root: Path) -> dict[str, str]:
    shards = root / "shards"
    return {p.relative_to(shards).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(shards.rglob("*.tar"))}


def test_array_and_merge_jobs_on_real_slurm_give_the_local_shards(slurm_conf, demo_dataset, demo_spec, tmp_path):
    env = _slurm_env(slurm_conf)
    # The #SBATCH defaults (8 CPUs, 16G) exceed this node and would pend forever (PartitionConfig).
    env.update(AVBENCH=f"{sys.executable} -m avbench", AVBENCH_SBATCH_OPTS="--cpus-per-task=1 --mem=1G")
    root = tmp_path / "root"
    res = subprocess.run(["bash", str(BUILD), str(demo_spec), str(root), "2"], cwd=tmp_path, env=env,
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    submitted = re.search(r"submitted array job (\d+) .* merge job (\d+)", res.stdout)
    assert submitted, res.stdout
    array_id, merge_id = submitted.groups()
    _wait_for_jobs([array_id, merge_id], env, tmp_path)

    states = _job_states(array_id, env) + _job_states(merge_id, env)
    assert states == ["COMPLETED"] * 3, f"{states}\n{_logs(tmp_path)}"
    task_logs = [tmp_path / f"avbench-build-{array_id}_{i}.log" for i in range(2)]
    merge_log = (tmp_path / f"avbench-merge-{merge_id}.log").read_text()
    # The two array tasks did the work between them (a deterministic split of the 5 sources) and the
    # merge, started only after both, found every source done and just sharded.
    resampled = [int(re.search(r"^resample: total (\d+), done \1,", p.read_text(), re.MULTILINE).group(1))
                 for p in task_logs]
    assert sum(resampled) == 5 and all(resampled), resampled
    assert re.search(r"^resample: total 5, done 0, skipped 5,", merge_log, re.MULTILINE), merge_log
    assert "0 source(s) failed" in merge_log

    local_index = (demo_dataset / "shards" / "index.json").read_bytes()
    assert (root / "shards" / "index.json").read_bytes() == local_index
    digests = _tar_digests(root)
    assert digests == _tar_digests(demo_dataset)
    assert sorted(digests.values()) == sorted(r["sha256"] for r in json.loads(local_index)["shards"])
