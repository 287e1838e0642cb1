"""Run one per-source stage over many sources: resume, parallel workers, failure records, a summary.

A stage is a picklable function `work(job) -> dict` over one source plus a completion marker path per
source. Sources whose marker exists are skipped; a source whose `work` raises is recorded in
`DIR/failures/<stage>/<source_id>.json` (one line of reason, the error class) and the run goes on. A
success removes an old failure record. Results come back in the order of the input, never the order of
completion, so summaries are deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from avbench.errors import CurateError
from avbench.io import atomic_write_json


class SourceError(CurateError):
    """A source cannot be processed; the message is one line naming the file and what to do."""

    def __init__(self, message: str, error_class: str = "permanent"):
        super().__init__(message)
        self.error_class = error_class


@dataclass
class StageSummary:
    stage: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0  # sources an earlier stage already recorded as failed (not retried here)
    failures: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "total": self.total, "done": self.done, "skipped": self.skipped,
                "failed": self.failed, "upstream_failed": self.upstream_failed,
                "failures": dict(sorted(self.failures.items()))}

    def line(self) -> str:
        upstream = f", {self.upstream_failed} failed in an earlier stage" if self.upstream_failed else ""
        return (f"{self.stage}: {self.done} done, {self.skipped} already done, {self.failed} failed{upstream} "
                f"(of {self.total} sources)")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def failure_path(root: Path, stage: str, source_id: str) -> Path:
    return Path(root) / "failures" / stage / f"{source_id}.json"


def _call(work: Callable[[Any], dict], job: Any) -> tuple[str, Any]:
    """Run in the worker: turn every exception into a one-line reason (a crash must not kill the run)."""
    try:
        return "ok", work(job)
    except SourceError as e:
        return "failed", (str(e), e.error_class)
    except Exception as e:  # noqa: BLE001 - any library error becomes this source's failure record
        return "failed", (f"{type(e).__name__}: {e}".splitlines()[0], "permanent")


def run_stage(
    stage: str,
    root: Path,
    jobs: Iterable[tuple[str, Path, Any]],
    work: Callable[[Any], dict],
    *,
    workers: int = 0,
    progress: Any = True,
    upstream_failed: int = 0,
) -> StageSummary:
    """`jobs` are (source_id, marker path, job argument). `progress`: True for a rich bar, False for
    none, or a `rich.progress.Progress` to add a task to (the build command shares one)."""
    root = Path(root)
    jobs = list(jobs)
    summary = StageSummary(stage=stage, total=len(jobs) + upstream_failed, upstream_failed=upstream_failed)
    todo = []
    for source_id, marker, arg in jobs:
        if Path(marker).exists():
            summary.skipped += 1
        else:
            todo.append((source_id, arg))
    workers = min(workers or default_workers(), max(1, len(todo)))

    def record(source_id: str, status: str, value: Any) -> None:
        fpath = failure_path(root, stage, source_id)
        if status == "ok":
            summary.done += 1
            summary.results[source_id] = value
            fpath.unlink(missing_ok=True)
        else:
            message, error_class = value
            summary.failed += 1
            summary.failures[source_id] = message
            atomic_write_json(fpath, {"source_id": source_id, "stage": stage, "status": "failed",
                                      "error_class": error_class, "error": message})

    with _progress(progress, stage, len(todo)) as advance:
        if workers <= 1:
            for source_id, arg in todo:
                record(source_id, *_call(work, arg))
                advance()
        else:
            # spawn, not fork: the parent may hold threads (rich's refresher, torch) that fork would copy
            # in a locked state. An executor, not a Pool: a worker that dies raises instead of hanging.
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                pending = [pool.submit(_call, work, arg) for _, arg in todo]
                for (source_id, _), fut in zip(todo, pending):
                    try:
                        status, value = fut.result()
                    except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                        reason = f"worker crashed: {type(e).__name__}: {e}".splitlines()[0]
                        status, value = "failed", (reason, "transient")
                    record(source_id, status, value)
                    advance()
    return summary


class _progress:
    """A context manager yielding `advance()`; hides rich behind a tiny interface."""

    def __init__(self, progress: Any, stage: str, total: int):
        self.progress, self.stage, self.total = progress, stage, total
        self._own = None

    def __enter__(self) -> Callable[[], None]:
        if self.progress is False or self.progress is None or self.total == 0:
            return lambda: None
        if self.progress is True:
            from rich.progress import Progress

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
