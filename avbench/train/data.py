"""Training batches from the shards: `avbench.data`'s resampled window loader, one epoch at a time.

`WindowLoader` seeds epoch e of (rank, worker) from (seed, e, rank, worker), and yields exactly
`data.epoch_batches` batches per epoch on every rank (rounded up to a multiple of the worker count);
`BatchStream` (batches.py) turns that into an endless stream with a resumable position.
"""

from __future__ import annotations

import functools
import signal
from typing import Callable, Iterable

from avbench.data.windows import WindowConfig, make_loader
from avbench.train.config import TrainConfig
from avbench.train.distributed import DistInfo


def shard_epochs(cfg: TrainConfig, dist: DistInfo) -> Callable[[int, int, int, int], Iterable]:
    wcfg = WindowConfig(size=cfg.data.size, split=cfg.data.split, frames=cfg.data.frames, mode="train",
                        flip_p=cfg.data.flip, seed=cfg.train.seed)
    loader = make_loader(
        cfg.data.shards, wcfg, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
        batches_per_epoch=cfg.data.epoch_batches, rank=dist.rank, world_size=dist.world_size,
        pin_memory=dist.device.type == "cuda",
    )

    previous_init = loader.worker_init_fn
    loader.worker_init_fn = functools.partial(_worker_init, previous_init)

    def make_epoch(epoch: int, seed: int, rank: int, world: int) -> Iterable:  # noqa: ARG001 - seeded above
        loader.set_epoch(epoch)
        return loader

    return make_epoch


def _worker_init(previous, worker_id: int) -> None:
    """Loader workers ignore the preemption signals. SLURM or a shell may signal the whole process group;
    the trainer must finish its step and checkpoint, which needs its workers alive (they exit with it)."""
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if previous is not None:
        previous(worker_id)
