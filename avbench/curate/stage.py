"""The Stage protocol, its bookkeeping `run_stage`, and the local executor `local_dispatch`.

A stage (download, scene-cut, resample, shard) does the work of ONE job; the executor does everything
else: which jobs to skip (the stage marks them `done`), cleaning the stage's own temp files before a
job runs again, parallelism, failure records, progress and the summary. That split is the seam other
executors (SLURM arrays, Ray) plug into: they run any stage the same way. Within `run_stage`, only the
dispatch (which worker runs a job: a local thread or process, a Ray task) differs between executors.

Failures: a stage raises `avbench.errors.SourceFailure(cls, message)`; any other exception becomes a
permanent failure with its one-line `Type: message`. Either is written to
`ROOT/failures/<stage>/<source_id>.json` (one line of reason, the class) and the run goes on; a later
success removes the record. Results come back in the order of the jobs, never the order of completion,
so summaries are deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import Progress

from avbench.curate.partition import Partition
from avbench.errors import SourceFailure
from avbench.io import atomic_write_json

PARALLELISM = ("threads", "processes")


@dataclass(frozen=True)
class Job:
    """One unit of a stage's work. `arg` must be picklable (process workers receive it)."""

    source_id: str  # what failure records and summaries are keyed by ("shards" for the shard stage)
    done: bool  # computed by the stage (marker exists / record says ok); run_stage skips done jobs
    arg: Any = None
    # An earlier stage recorded this source as failed and left nothing to work on: counted in the
    # summary (so totals add up over stages) but neither run nor recorded again.
    upstream_failed: bool = False


class Stage(Protocol):
    name: str  # "download" | "scene-cut" | "resample" | "shard"
    parallelism: str  # "threads" (I/O bound) | "processes" (CPU bound)

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        """Every job of this root and slice, sorted by source id."""

    def run(self, job: Job) -> dict:
        """Do one job; on failure raise SourceFailure(cls, message)."""

    def cleanup(self, root: Path, job: Job) -> None:
        """Remove this stage's own leftover temp files of the job before it (re)runs (may do nothing)."""


@dataclass
class StageSummary:
    stage: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0  # sources an earlier stage already recorded as failed (not retried here)
    failures: dict[str, str] = field(default_factory=dict)  # source id → one-line reason
    failure_classes: dict[str, str] = field(default_factory=dict)  # source id → permanent | transient
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def transient(self) -> int:
        return sum(1 for c in self.failure_classes.values() if c == "transient")

    @property
    def permanent(self) -> int:
        return sum(1 for c in self.failure_classes.values() if c == "permanent")

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "total": self.total, "done": self.done, "skipped": self.skipped,
                "failed": self.failed, "upstream_failed": self.upstream_failed,
                "transient": self.transient, "permanent": self.permanent,
                "failures": dict(sorted(self.failures.items()))}

    def line(self) -> str:
        upstream = f", {self.upstream_failed} failed in an earlier stage" if self.upstream_failed else ""
        transient = f" ({self.transient} transient: rerun to retry)" if self.transient else ""
        return (f"{self.stage}: {self.done} done, {self.skipped} already done, {self.failed} failed{transient}"
                f"{upstream} (of {self.total} sources)")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def source_label(rec: Mapping[str, Any]) -> str:
    """How failure lines name a source: the user's file for local files (not the cache's
    `sources/<sha256>.mp4`), else its URL, then the source id and the cached copy."""
    where = (rec.get("paths") or [None])[0] if rec.get("kind") == "file" else rec.get("url")
    cached = rec.get("path")
    return f"{where} ({rec['source_id']}, {cached})" if where else f"{cached} ({rec['source_id']})"


def failure_path(root: Path, stage: str, source_id: str) -> Path:
    return Path(root) / "failures" / stage / f"{source_id}.json"


def call_job(stage: Stage, job: Job) -> tuple[str, Any]:
    """Run in the worker: turn every exception into a one-line reason (a crash must not kill the run)."""
    try:
        return "ok", stage.run(job)
    except SourceFailure as e:
        return "failed", (str(e).splitlines()[0] if str(e) else type(e).__name__, e.cls)
    except Exception as e:  # noqa: BLE001 - any library error becomes this source's failure record
        return "failed", (f"{type(e).__name__}: {e}".splitlines()[0], "permanent")


def worker_crashed(e: BaseException) -> tuple[str, Any]:
    """The outcome of a job whose worker died (OOM killer, lost node) before `call_job` could answer: transient,
    since the same job on a fresh worker may well succeed."""
    return "failed", (f"worker crashed: {type(e).__name__}: {e}".splitlines()[0], "transient")


class Dispatch(Protocol):
    """How an executor runs jobs: one `(status, value)` outcome of `call_job` per job, yielded IN THE ORDER OF
    `jobs` (never of completion), at most `workers` at once (0: the executor's own default)."""

    def __call__(self, stage: Stage, jobs: list[Job], workers: int) -> Iterator[tuple[str, Any]]: ...


def local_dispatch(stage: Stage, jobs: list[Job], workers: int) -> Iterator[tuple[str, Any]]:
    """This machine: threads or spawned processes (per `stage.parallelism`); 0 workers = one per core."""
    workers = min(workers or default_workers(), max(1, len(jobs)))
    if workers <= 1:
        for job in jobs:
            yield call_job(stage, job)
        return
    with _executor(stage.parallelism, workers) as pool:
        pending = [pool.submit(call_job, stage, job) for job in jobs]
        for fut in pending:
            try:
                yield fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                yield worker_crashed(e)


def run_stage(stage: Stage, root: Path, partition: Partition = Partition(0, 1), *, workers: int = 0,
              progress: bool | Progress = True, dispatch: Dispatch = local_dispatch) -> StageSummary:
    """Run every job of `stage` for this root and slice that is not done yet.

    `workers`: at most this many jobs at once (0 = the dispatch's default: one per core locally).
    `progress`: True for a rich bar, False for none, or a `rich.progress.Progress` to add a task to (build
    shares one). `dispatch`: how jobs reach workers (`local_dispatch`, or the Ray executor's); everything
    else — skipping, cleanup, failure records, the summary — is done here, the same for every executor.
    """
    if stage.parallelism not in PARALLELISM:
        raise ValueError(f"stage {stage.name}: parallelism must be one of {PARALLELISM}, not {stage.parallelism!r}")
    root = Path(root)
    jobs = stage.jobs(root, partition)
    summary = StageSummary(stage=stage.name, total=len(jobs))
    todo: list[Job] = []
    for job in jobs:
        if job.upstream_failed:
            summary.upstream_failed += 1
        elif job.done:
            summary.skipped += 1
        else:
            todo.append(job)

    def record(job: Job, status: str, value: Any) -> None:
        fpath = failure_path(root, stage.name, job.source_id)
        if status == "ok":
            summary.done += 1
            summary.results[job.source_id] = value
            fpath.unlink(missing_ok=True)
        else:
            message, error_class = value
            summary.failed += 1
            summary.failures[job.source_id] = message
            summary.failure_classes[job.source_id] = error_class
            atomic_write_json(fpath, {"source_id": job.source_id, "stage": stage.name, "status": "failed",
                                      "error_class": error_class, "error": message})

    with _progress(progress, stage.name, len(todo)) as advance:
        for job in todo:
            # before any worker starts: a leftover of a killed run must not be mistaken for output
            stage.cleanup(root, job)
        if todo:
            outcomes = dispatch(stage, todo, workers)
            try:
                for job, (status, value) in zip(todo, outcomes, strict=True):
                    record(job, status, value)
                    advance()
            finally:  # now, not at garbage collection: an interrupted run stops its workers (Ray cancels)
                getattr(outcomes, "close", lambda: None)()
    return summary


def _executor(parallelism: str, workers: int) -> Executor:
    if parallelism == "threads":
        return ThreadPoolExecutor(workers)
    # spawn, not fork: the parent may hold threads (rich's refresher, torch) that fork would copy in a
    # locked state. An executor, not a Pool: a worker that dies raises instead of hanging.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class _progress:
    """A context manager yielding `advance()`; hides rich behind a tiny interface."""

    def __init__(self, progress: bool | Progress | None, stage: str, total: int):
        self.progress, self.stage, self.total = progress, stage, total
        self._own: Progress | None = None

    def __enter__(self) -> Callable[[], None]:
        if self.progress is False or self.progress is None or self.total == 0:
            return lambda: None
        if self.progress is True:
            self._own = Progress(transient=False)
            self._own.__enter__()
            bar = self._own
        else:
            bar = self.progress
        task = bar.add_task(self.stage, total=self.total)
        return lambda: bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._own is not None:
            self._own.__exit__(*exc)
