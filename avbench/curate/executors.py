"""Executors: where a stage's jobs run. `local` (threads or processes on this machine) or `ray`.

`run_stage` (stage.py) keeps every executor's bookkeeping in one place — skipping done jobs, cleanup
before a job reruns, failure records, the summary in job order — and takes the one thing that differs,
the dispatch. The Ray dispatch runs ONE Ray task per job (per source and stage), each calling the same
`call_job(stage, job)` the local workers call, so a job writes the same completion markers and reports
failures the same way wherever it runs: a Ray build that is killed resumes like a local one, and a rerun
with the other executor picks up where this one stopped.

Ray specifics:
- the root must be one shared filesystem for the driver and every node (the markers live there); the
  build passes absolute paths so a worker's working directory does not matter; avbench (the same
  version) must be installed on every node;
- a task is never retried by Ray (`max_retries=0`): a crashed worker may leave temp files that only the
  driver's `cleanup` (before a job runs) removes, so the job becomes a transient failure record and the
  next run retries it cleanly, as with a local process pool;
- CPU-bound stages ("processes") ask 1 CPU per task, so the cluster's CPUs bound their concurrency;
  I/O-bound ones ("threads": download) ask none and run at most `workers` (`--jobs`) at once in the
  whole cluster;
- Ray is an optional extra (`pip install "avbench[ray]"`), imported only when this executor is chosen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from avbench.curate.stage import Dispatch, Job, Stage, call_job, local_dispatch, worker_crashed
from avbench.errors import ConfigError, ToolMissingError

EXECUTORS = ("local", "ray")
RAY_INSTALL = 'pip install "avbench[ray]" (in a checkout: pip install -e ".[ray]")'


def check_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return name


@contextmanager
def open_executor(name: str, *, ray_address: str | None = None) -> Iterator[Dispatch]:
    """The dispatch of executor `name` for the duration of a build.

    ray: reuses a Ray this process is already connected to; else connects to `ray_address` (or
    RAY_ADDRESS) when given, or starts a local Ray for this build (shut down afterwards).
    """
    if check_executor(name) == "local":
        yield local_dispatch
        return
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        try:
            if address:
                ray.init(address=address, logging_level="WARNING")
            else:  # "local": never join a cluster found elsewhere on this machine; no dashboard (ray[default])
                ray.init(address="local", include_dashboard=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ConfigError(f"--executor ray: cannot start or reach {where}: {str(e).splitlines()[0]}") from e
        started = True
    try:
        yield ray_dispatch
    finally:
        if started:
            ray.shutdown()


def ray_dispatch(stage: Stage, jobs: list[Job], workers: int) -> Iterator[tuple[str, Any]]:
    """One Ray task per job; outcomes in job order; at most `workers` tasks in flight (0: all of them,
    and the cluster's free CPUs decide). Closing the generator early cancels the tasks still running."""
    ray = _import_ray()
    task = ray.remote(call_job)
    options = {
        "num_cpus": 1 if stage.parallelism == "processes" else 0,
        "max_retries": 0,  # see the module docstring: retries happen in the next run, after cleanup
    }
    stage_ref = ray.put(stage)  # shipped once, not once per task
    cap = workers if workers > 0 else len(jobs)
    refs: list[Any] = []
    in_flight: set[Any] = set()

    def fill() -> None:
        while len(refs) < len(jobs) and len(in_flight) < cap:
            job = jobs[len(refs)]
            ref = task.options(name=f"avbench {stage.name} {job.source_id}", **options).remote(stage_ref, job)
            refs.append(ref)
            in_flight.add(ref)

    try:
        for i in range(len(jobs)):
            fill()
            # keep the cap full while waiting for job i: a slow job must not idle the other slots
            while refs[i] in in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                in_flight.difference_update(ready)
                fill()
            try:
                outcome = ray.get(refs[i])
            except ray.exceptions.RayError as e:  # the worker died, its node was lost, ...
                outcome = worker_crashed(e)
            refs[i] = None  # drop the result from the object store's reach
            yield outcome
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)


def _import_ray() -> Any:
    try:
        import ray  # heavy optional extra: only for --executor ray
    except ImportError as e:
        raise ToolMissingError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from e
    return ray
