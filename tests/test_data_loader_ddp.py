"""Two real DDP ranks (torch.distributed, gloo, 2 CPU processes) read the shards through make_loader.

eval mode: disjoint samples by construction and the same number of batches on both ranks (13 samples:
truncate → 6 each, pad → 7 each, wrapping around). train mode (resampled shards + a fixed epoch length):
the same number of batches on both ranks, and different streams.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from support.shardkit import make_sharded_root

SOURCES = {**{f"synth-9-{i}": [16, 16, 16] for i in range(4)}, "synth-9-4": [16]}  # 13 clips


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist

    from avbench.data import WindowConfig, make_loader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = {}
        for equalize in ("truncate", "pad"):
            loader = make_loader(root, WindowConfig(size=32, mode="eval", equalize=equalize), batch_size=4,
                                 num_workers=1 if equalize == "pad" else 0)
            batches = [b["key"] for b in loader]
            result[equalize] = {"keys": [k for b in batches for k in b], "batches": len(batches), "len": len(loader)}
        train = make_loader(root, WindowConfig(size=32, seed=0), batch_size=2, num_workers=0)
        keys = [b["key"] for b in train]
        result["train"] = {"batches": len(keys), "len": len(train), "keys": [k for b in keys for k in b]}
        gathered = [None] * world
        dist.all_gather_object(gathered, result)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_sharded_root(tmp_path_factory.mktemp("ddp"), SOURCES, seed=9, samples_per_shard=3)


def test_two_gloo_ranks_get_disjoint_eval_data_and_equal_batch_counts(root, tmp_path):
    out = tmp_path / "gathered.json"
    mp.start_processes(_rank_main, args=(2, _free_port(), str(root), str(out)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = json.loads(out.read_text())

    t0, t1 = set(r0["truncate"]["keys"]), set(r1["truncate"]["keys"])
    assert len(t0) == len(t1) == 6 and not t0 & t1
    assert r0["truncate"]["batches"] == r1["truncate"]["batches"] == r0["truncate"]["len"] == 2

    p0, p1 = r0["pad"]["keys"], r1["pad"]["keys"]
    assert len(p0) == len(p1) == 7
    assert len(set(p0) | set(p1)) == 13  # every sample once, one repeated to even the ranks
    assert r0["pad"]["batches"] == r1["pad"]["batches"] == r0["pad"]["len"]

    assert r0["train"]["batches"] == r1["train"]["batches"] == r0["train"]["len"] == 13 // (2 * 2)
    assert r0["train"]["keys"] != r1["train"]["keys"]  # resampled with per-rank seeds
