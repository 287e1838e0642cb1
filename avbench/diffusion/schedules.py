"""Noise schedules and the diffusion settings a checkpoint records.

A schedule is fully described by its betas. Everything a sampler needs (ᾱ, posterior coefficients,
clipped log-variances) is derived here once, in float64, so that samplers only read scalars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

SCHEDULES = ("linear", "cosine")
VARIANCES = ("fixed_large", "fixed_small", "learned_range")
PARAMETERIZATIONS = ("eps",)


def linear_betas(num_steps: int) -> torch.Tensor:
    """DDPM's linear betas, rescaled so that any step count spans the same noise range as 1000 steps."""
    scale = 1000.0 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved-DDPM cosine schedule: ᾱ(t) = cos²((t + s)/(1 + s) · π/2), betas capped at `max_beta`."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def make_betas(name: str, num_steps: int) -> torch.Tensor:
    if name == "linear":
        return linear_betas(num_steps)
    if name == "cosine":
        return cosine_betas(num_steps)
    raise ValueError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class DiffusionConfig:
    """How a model was trained; stored in every checkpoint so sampling can never use other settings.

    `variance` is what DDPM sampling uses for σ_t: `fixed_large` (β_t, the MM-Diffusion default),
    `fixed_small` (the posterior variance) or `learned_range` (the model's extra output channels pick a
    log-variance between the two, as in improved DDPM; the SR model). `rescale_vb`: the learned-variance
    loss's VB term was scaled by T/1000 (improved DDPM's `rescale_learned_sigmas`; the seed's SR training
    did not scale it). Files written before it was recorded read as True, which is what avbench did then.
    """

    steps: int = 1000
    schedule: str = "linear"
    parameterization: str = "eps"
    variance: str = "fixed_large"
    rescale_vb: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unsupported parameterization {self.parameterization!r}; only 'eps' is implemented")
        if self.variance not in VARIANCES:
            raise ValueError(f"unknown variance type {self.variance!r}; choose one of {', '.join(VARIANCES)}")

    @property
    def learned_sigma(self) -> bool:
        return self.variance == "learned_range"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["learned_sigma"] = self.learned_sigma
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if "learned_sigma" in d and bool(d["learned_sigma"]) != cfg.learned_sigma:
            raise ValueError(f"inconsistent diffusion settings: learned_sigma={d['learned_sigma']} but variance={cfg.variance!r}")
        return cfg

    def schedule_obj(self) -> Schedule:
        return Schedule(make_betas(self.schedule, self.steps))


class Schedule:
    """Derived quantities of a beta schedule, possibly respaced to a subset of the training timesteps.

    Index i runs over the schedule's own steps; `timesteps[i]` is the training timestep the model must be
    called with (identity unless respaced). Step i goes from ᾱ[i] to ᾱ[i-1], and to clean data (ᾱ = 1)
    for i = 0.
    """

    def __init__(self, betas: torch.Tensor, timesteps: Sequence[int] | None = None, num_train_steps: int | None = None,
                 final_alpha_cumprod: float = 1.0):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1]")
        self.betas = betas
        self.num_steps = len(betas)
        self.timesteps = list(range(self.num_steps)) if timesteps is None else [int(t) for t in timesteps]
        self.num_train_steps = num_train_steps if num_train_steps is not None else self.num_steps
        # Where the last step lands: clean data (ᾱ = 1) for every sampler except the seed's DPM-Solver, whose
        # grid stops at the first training timestep (`respace.dpm_logsnr`); only `sample_dpm_solver_3s` reads it.
        self.final_alpha_cumprod = float(final_alpha_cumprod)
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        ac, acp = self.alphas_cumprod, self.alphas_cumprod_prev
        self.posterior_variance = betas * (1 - acp) / (1 - ac)
        # The posterior variance is 0 at the first step; borrow the next one so its log stays finite.
        pv_next = self.posterior_variance[1] if self.num_steps > 1 else betas[0]
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv_next.reshape(1), self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * acp.sqrt() / (1 - ac)
        self.posterior_mean_coef2 = (1 - acp) * alphas.sqrt() / (1 - ac)
        # q_sample's coefficients, taken in float64 and cast only at use: √(1-ᾱ) of a float32 ᾱ is 8e-5 off
        # at small t, where the original's float64 tables are exact.
        self.sqrt_alphas_cumprod = ac.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1 - ac).sqrt()

    def respace(self, use_timesteps: Sequence[int]) -> Schedule:
        """Keep only `use_timesteps` (training timesteps), with betas recomputed so ᾱ is unchanged there."""
        if self.timesteps != list(range(self.num_steps)):
            raise ValueError("respace a training schedule, not an already respaced one")
        keep = sorted(set(int(t) for t in use_timesteps))
        if not keep or keep[0] < 0 or keep[-1] >= self.num_steps:
            raise ValueError(f"respaced timesteps must lie in [0, {self.num_steps - 1}], got {keep[:3]}…{keep[-3:]}")
        ac = self.alphas_cumprod[keep]
        new_betas = 1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        return Schedule(new_betas, keep, self.num_steps)

    def log_variance(self, kind: str) -> torch.Tensor:
        """Per-step log σ² for DDPM with a fixed variance."""
        if kind == "fixed_small":
            return self.posterior_log_variance_clipped
        if kind == "fixed_large":
            # β_t, except the first step, whose posterior variance is used (as in guided-diffusion).
            pv_next = self.posterior_variance[1] if self.num_steps > 1 else self.betas[0]
            return torch.log(torch.cat([pv_next.reshape(1), self.betas[1:]]))
        raise ValueError(f"no fixed log-variance for {kind!r}")
