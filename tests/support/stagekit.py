"""Test helper: a tiny Stage (picklable, so process workers can run it) whose jobs are files under ROOT."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from avbench.curate.partition import Partition
from avbench.curate.stage import Job
from avbench.errors import SourceFailure


@dataclass(frozen=True)
class EchoStage:
    """Job ids from `ids`; `ROOT/out/<id>` is the marker. Ids starting "perm"/"trans" raise SourceFailure of
    that class, "bug" raises a plain error; every run returns the worker's pid."""

    ids: tuple[str, ...]
    name: str = "echo"
    parallelism: str = "processes"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        return [Job(i, (Path(root) / "out" / i).exists(), (str(root), i)) for i in partition.select(self.ids)]

    def run(self, job: Job) -> dict:
        root, sid = job.arg
        if (Path(root) / "out" / f".tmp-{sid}").exists():
            raise AssertionError("cleanup did not run before the job")
        if sid.startswith("perm"):
            raise SourceFailure("permanent", f"{sid}: cannot be used\nsecond line")
        if sid.startswith("trans"):
            raise SourceFailure("transient", f"{sid}: try again")
        if sid.startswith("bug"):
            raise KeyError("no such thing")
        (Path(root) / "out").mkdir(exist_ok=True)
        (Path(root) / "out" / sid).write_text("ok")
        return {"pid": os.getpid(), "id": sid}

    def cleanup(self, root: Path, job: Job) -> None:
        (Path(root) / "out" / f".tmp-{job.source_id}").unlink(missing_ok=True)
