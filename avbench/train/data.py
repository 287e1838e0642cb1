"""Training batches from the shards: `avbench.data`'s resampled window loader, one epoch at a time.

`WindowLoader` seeds epoch e of (rank, worker) from (seed, e, rank, worker), and yields exactly
`data.epoch_batches` batches per epoch on every rank (rounded up to a multiple of the worker count);
`BatchStream` (batches.py) turns that into an endless stream with a resumable position.
"""

from __future__ import annotations

from typing import Callable, Iterable

from avbench.train.config import TrainConfig
from avbench.train.distributed import DistInfo


def shard_epochs(cfg: TrainConfig, dist: DistInfo) -> Callable[[int, int, int, int], Iterable]:
    from avbench.data.windows import WindowConfig, make_loader

    wcfg = WindowConfig(size=cfg.data.size, split=cfg.data.split, frames=cfg.data.frames, mode="train",
                        flip_p=cfg.data.flip, seed=cfg.train.seed)
    loader = make_loader(
        cfg.data.shards, wcfg, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
        batches_per_epoch=cfg.data.epoch_batches, rank=dist.rank, world_size=dist.world_size,
        pin_memory=dist.device.type == "cuda",
    )

    def make_epoch(epoch: int, seed: int, rank: int, world: int) -> Iterable:  # noqa: ARG001 - seeded above
        loader.set_epoch(epoch)
        return loader

    return make_epoch
