"""Training: `TrainConfig` (TOML configs + overrides) and `train(cfg, run)`, the DDP-ready loop.

    from avbench.train import load_config, train
    cfg = load_config("tiny", ["data.shards='data/demo'", "train.max_steps=100"])
    result = train(cfg, "runs/tiny")

Modules: config (dataclasses, TOML, overrides), loop (the loop), objectives (model + loss per task),
batches/data (the resumable batch stream over the shard loader), checkpointing (files, resume, signals),
states (the objects a checkpoint is made of),
ema, distributed (rank/world from the environment), launch (`--nproc`), logging, preview, export,
throughput (step timing, MFU).
"""

from avbench.train.config import ConfigError, TrainConfig, load_config


def train(*args, **kwargs):
    """`avbench.train.loop.train` (imported on first use: it pulls in torch)."""
    from avbench.train.loop import train as _train

    return _train(*args, **kwargs)


__all__ = ["ConfigError", "TrainConfig", "load_config", "train"]
