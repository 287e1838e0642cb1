"""The objects a training checkpoint is made of, each with `state_dict`/`load_state_dict`.

The loop builds one `states` dict (torchtitan's checkpointer is the model):

    states = {"model": model, "ema": ema, "optimizer": opt, "scheduler": sched, "scaler": scaler,
              "train": TrainState, "data": DataState, "rng": RngState}

`save_states` writes `{name: obj.state_dict()}` plus metadata, `avbench.checkpoint.load_states` calls
`load_state_dict` on each: the keys are written once. Every rank calls `state_dict()` (the data positions
and RNG states of all ranks are gathered to rank 0, which alone writes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from avbench import checkpoint as fmt
from avbench.train import checkpointing as ckpt
from avbench.train import distributed as D
from avbench.train.batches import BatchStream
from avbench.train.config import TrainConfig


@dataclass
class TrainState:
    """Loop counters: optimizer steps taken, steps skipped for a NaN/inf loss, fp16 overflow steps skipped."""

    step: int = 0
    nonfinite_total: int = 0
    overflow_total: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.step = int(d["step"])
        self.nonfinite_total = int(d.get("nonfinite_total", 0))
        self.overflow_total = int(d.get("overflow_total", 0))


class DataState:
    """The batch stream's position on every rank (rank 0's also at top level, for readers)."""

    def __init__(self, stream: BatchStream, dist: D.DistInfo):
        self.stream, self.dist = stream, dist

    def state_dict(self) -> dict[str, Any]:
        mine = self.stream.position()
        ranks = [mine]
        if self.dist.enabled:
            ranks = [None] * self.dist.world_size
            torch.distributed.all_gather_object(ranks, mine)
        return {**ranks[0], "ranks": ranks}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        # Ranks' streams part ways when a loader failure ends an epoch early on one rank only.
        ranks = d.get("ranks") or []
        pos = ranks[self.dist.rank] if len(ranks) == self.dist.world_size else d
        self.stream.seek(pos["epoch"], pos["index"])


class RngState:
    """torch / Python / NumPy (and CUDA) generator states of every rank."""

    def __init__(self, dist: D.DistInfo):
        self.dist = dist

    def state_dict(self) -> list[dict[str, Any]]:
        mine = ckpt.rng_state()
        if not self.dist.enabled:
            return [mine]
        states = [None] * self.dist.world_size
        torch.distributed.all_gather_object(states, mine)
        return states

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        # another world size: the per-step reseeding still makes the run deterministic from here on
        if len(states) == self.dist.world_size:
            ckpt.set_rng_state(states[self.dist.rank])


def checkpoint_meta(cfg: TrainConfig, model_cfg, diffusion: dict[str, Any], dist: D.DistInfo) -> dict[str, Any]:
    return {"kind": cfg.kind, "config": cfg.to_dict(), "model_config": model_cfg.to_dict(),
            "diffusion": diffusion, "world_size": dist.world_size}


def save_states(path: Path, states: dict[str, Any], meta: dict[str, Any], dist: D.DistInfo) -> Path:
    """All ranks call this (state_dict() gathers); only rank 0 writes."""
    payload = fmt.training_payload(states, meta)
    if dist.is_main:
        ckpt.save_training_state(path, payload)
    return path


# Param-group settings that come from [optim]; on resume the config wins over the checkpoint.
_OPTIM_KEYS = ("betas", "weight_decay", "eps")
# How the optimizer runs, not its state: always the current construction's (e.g. fused only on CUDA).
_IMPL_KEYS = ("fused", "foreach", "capturable", "differentiable")


def implementation_flags(opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{k: g[k] for k in _IMPL_KEYS if k in g} for g in opt.param_groups]


def apply_optim_config(cfg: TrainConfig, opt: torch.optim.Optimizer, sched, impl: list[dict[str, Any]]
                       ) -> dict[str, list[Any]]:
    """After loading a checkpoint: put the config's lr/betas/weight_decay/eps into the optimizer.

    Returns {"optim.<key>": [checkpoint value, config value]} for every setting that differed, so the
    loop can log what changed. The learning-rate schedule keeps its position (step count) and warmup
    shape; only its base rate becomes `optim.lr`.
    """
    want = {"betas": tuple(float(b) for b in cfg.optim.betas), "weight_decay": float(cfg.optim.weight_decay),
            "eps": float(cfg.optim.eps)}
    changed: dict[str, list[Any]] = {}
    for group, flags in zip(opt.param_groups, impl):
        group.update(flags)
        for key in _OPTIM_KEYS:
            old = tuple(group[key]) if key == "betas" else group[key]
            if old != want[key]:
                changed[f"optim.{key}"] = [list(old) if key == "betas" else old,
                                           list(want[key]) if key == "betas" else want[key]]
                group[key] = want[key]
    base = [float(cfg.optim.lr)] * len(opt.param_groups)
    if list(sched.base_lrs) != base:
        changed["optim.lr"] = [sched.base_lrs[0], base[0]]
        sched.base_lrs = base
    # LambdaLR's own formula at its restored position: unchanged settings give the stored value bit for
    # bit; a changed lr or warm-up takes effect from the first resumed step, not one step late.
    for group, lr, fn in zip(opt.param_groups, base, sched.lr_lambdas):
        group["initial_lr"] = lr
        group["lr"] = lr * fn(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in opt.param_groups]
    return changed
