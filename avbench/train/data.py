"""Training batches from the shards: `avbench.data`'s resampled window loader, one epoch at a time.

The latent kind reads the latent shards of `avbench encode` (ROOT/latents/<vae>/<size>, named by
`data.latents`) through `avbench.data.latents` instead; its window shapes come from their index.

`WindowLoader` seeds epoch e of (rank, worker) from (seed, e, rank, worker), and yields exactly
`data.epoch_batches` batches per epoch on every rank (rounded up to a multiple of the worker count);
`BatchStream` (batches.py) turns that into an endless stream with a resumable position.
"""

from __future__ import annotations

import functools
import signal
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

from avbench.data.latents import make_latent_loader
from avbench.data.windows import WindowConfig, make_loader
from avbench.dataset_index import load_latent_index
from avbench.errors import ConfigError
from avbench.train.config import TrainConfig
from avbench.train.distributed import DistInfo


def shard_epochs(cfg: TrainConfig, dist: DistInfo) -> Callable[[int, int, int, int], Iterable]:
    common = {"batch_size": cfg.data.batch_size, "num_workers": cfg.data.workers,
              "batches_per_epoch": cfg.data.epoch_batches, "rank": dist.rank, "world_size": dist.world_size,
              "pin_memory": dist.device.type == "cuda"}
    if cfg.kind == "latent":
        loader = make_latent_loader(data_root(cfg), cfg.data.latents["vae"], cfg.data.latents["size"],
                                    cfg.data.split, cfg.data.frames, mode="train", seed=cfg.train.seed, **common)
    else:
        wcfg = WindowConfig(size=cfg.data.size, split=cfg.data.split, frames=cfg.data.frames, mode="train",
                            flip_p=cfg.data.flip, seed=cfg.train.seed)
        loader = make_loader(cfg.data.shards, wcfg, **common)

    previous_init = loader.worker_init_fn
    loader.worker_init_fn = functools.partial(_worker_init, previous_init)

    def make_epoch(epoch: int, seed: int, rank: int, world: int) -> Iterable:  # noqa: ARG001 - seeded above
        loader.set_epoch(epoch)
        return loader

    return make_epoch


def data_root(cfg: TrainConfig) -> Path:
    """The dataset root of `data.shards` (`DIR` or `DIR/shards`)."""
    root = Path(cfg.data.shards)
    return root.parent if root.name == "shards" and not (root / "shards").is_dir() else root


def latent_window_shapes(cfg: TrainConfig) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """(video [F, Cv, h, w], audio [Ca, Ta]) of one `data.frames` window of the latent shards."""
    vae, size = cfg.data.latents["vae"], cfg.data.latents["size"]
    index = load_latent_index(data_root(cfg), vae, size)
    cv, h, w = index["video_latent"]["shape_per_frame"]
    audio = index["audio_latent"]
    ta = Fraction(audio["latents_per_frame"]) * cfg.data.frames
    if ta.denominator != 1:
        raise ConfigError(f"data.frames = {cfg.data.frames} does not span whole audio latents of {vae} "
                          f"({audio['latents_per_frame']} per frame); use a multiple of {audio['frame_step']} frames")
    return (cfg.data.frames, int(cv), int(h), int(w)), (int(audio["channels"]), int(ta))


def _worker_init(previous, worker_id: int) -> None:
    """Loader workers ignore the preemption signals. SLURM or a shell may signal the whole process group;
    the trainer must finish its step and checkpoint, which needs its workers alive (they exit with it)."""
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if previous is not None:
        previous(worker_id)
