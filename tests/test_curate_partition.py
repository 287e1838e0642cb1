"""Every stage of one SLURM array task works on the same slice: the slice is taken over the lock file,
not over whatever other tasks have finished downloading."""

from __future__ import annotations

import json

from avbench.curate.lock import write_lock
from avbench.curate.partition import Partition
from avbench.curate.records import ready_sources
from avbench.curate.sources import SourceEntry


def _root_with(tmp_path, ids, ready):
    write_lock(tmp_path / "lock.csv", [SourceEntry(source_id=i, kind="synthetic", id=i) for i in ids])
    (tmp_path / "records").mkdir()
    (tmp_path / "sources").mkdir()
    for i in ready:
        (tmp_path / "sources" / f"{i}.mp4").write_bytes(b"x")
        rec = {"source_id": i, "status": "ok", "path": f"sources/{i}.mp4"}
        (tmp_path / "records" / f"{i}.json").write_text(json.dumps(rec))
    return tmp_path


def test_partition_is_taken_over_the_lock_not_the_ready_set(tmp_path):
    ids = [f"synth-0-{k}" for k in range(4)]
    # Task 0/2 owns ids 0 and 2 (round robin over the sorted lock); task 1/2 has downloaded only id 3 so far.
    # Slicing the ready set instead would hand id 2 to task 1 and id 3 to task 0.
    root = _root_with(tmp_path, ids, ready=[ids[0], ids[2], ids[3]])
    part0 = [r["source_id"] for r in ready_sources(root, Partition(0, 2))]
    part1 = [r["source_id"] for r in ready_sources(root, Partition(1, 2))]
    assert part0 == [ids[0], ids[2]]
    assert part1 == [ids[3]]
    assert [r["source_id"] for r in ready_sources(root)] == [ids[0], ids[2], ids[3]]
