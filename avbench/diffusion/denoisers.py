"""Denoisers: a trained ε-prediction network turned into the callable every sampler takes.

A sampler (`avbench.diffusion.samplers`) calls `denoiser(x, t)`: x is a tuple of noisy tensors (video,
audio for the joint model; a 1-tuple for the SR model or a toy problem), t a [B] long tensor of training
timesteps. It gets back a `Prediction`: ε per element and, for a learned-variance model, the variance
values. How each network is called and how its output splits is written here once, so `avbench sample`
and the training previews cannot disagree about it; a `Denoiser` also carries the variance type the model
was trained with (`DiffusionConfig.variance`), which is what DDPM needs to pick σ_t.

The models are duck-typed (`model(video, audio, t)`, `model(x, t, low_res=...)` and their `cfg`): the
diffusion layer does not import `avbench.models`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from avbench.diffusion.gaussian import predict_eps, predict_x0
from avbench.diffusion.schedules import VARIANCES, Schedule
from avbench.errors import SampleError

Tensors = tuple[torch.Tensor, ...]


class Prediction(NamedTuple):
    """What a denoiser returns: ε for each element of x, and the learned-variance outputs (v ∈ [-1, 1],
    improved DDPM's `learned_range`) for models that have them."""

    eps: Tensors
    var_values: Tensors | None = None


ModelFn = Callable[[Tensors, torch.Tensor], "Prediction | Sequence[torch.Tensor]"]


def as_prediction(out: Prediction | Sequence[torch.Tensor]) -> Prediction:
    """Normalise a model function's output: a bare sequence of ε (fixed-variance models, the toy
    denoisers) becomes a `Prediction` without variance values; a `Prediction` is returned as is."""
    return out if isinstance(out, Prediction) else Prediction(tuple(out))


@dataclass(frozen=True)
class Denoiser:
    """A model function plus the variance type of its training (`fixed_large`, `fixed_small` or
    `learned_range`); calling it always returns a `Prediction`."""

    fn: ModelFn
    variance: str = "fixed_large"

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise SampleError(f"unknown variance type {self.variance!r}; choose one of {', '.join(VARIANCES)}")

    def __call__(self, x: Tensors, t: torch.Tensor) -> Prediction:
        return as_prediction(self.fn(x, t))


def split_learned(out: torch.Tensor, channels: int, dim: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε, variance values) of a learned-σ output that stacks both on `dim` (2·channels wide there)."""
    if out.shape[dim] != 2 * channels:
        raise SampleError(f"{what}: a learned-variance model must output {2 * channels} channels "
                          f"(ε and variance), this one outputs {out.shape[dim]}")
    eps, var = out.split(channels, dim=dim)
    return eps, var


def joint_denoiser(model: Any, variance: str = "fixed_large") -> Denoiser:
    """The coupled MM-UNet: x = (video [B, F, C, H, W], audio [B, C, L]), `model(video, audio, t)` returns
    ε for both. With `learned_range` each output carries ε then the variance values on its channel
    axis (video dim 2, audio dim 1)."""
    learned = variance == "learned_range"

    def fn(x: Tensors, t: torch.Tensor) -> Prediction:
        video, audio = model(x[0], x[1], t)
        if not learned:
            return Prediction((video, audio))
        ev, vv = split_learned(video, x[0].shape[2], 2, "joint model video output")
        ea, va = split_learned(audio, x[1].shape[1], 1, "joint model audio output")
        return Prediction((ev, ea), (vv, va))

    return Denoiser(fn, variance)


def superres_denoiser(model: Any, low_res: torch.Tensor, variance: str) -> Denoiser:
    """The SR U-Net on a batch of frames: x = (high-resolution noisy frames [N, C, H, W],), `low_res`
    [N, C, h, w] the conditioning frames. A `learn_sigma` model's output holds ε then the variance values
    on dim 1; they are returned whatever `variance` says, and DDPM uses them when it is `learned_range`."""
    learns = bool(getattr(model.cfg, "learn_sigma", False))
    if variance == "learned_range" and not learns:
        raise SampleError("diffusion variance 'learned_range' needs an SR model with learn_sigma = true")

    def fn(x: Tensors, t: torch.Tensor) -> Prediction:
        out = model(x[0], t, low_res=low_res)
        if not learns:
            return Prediction((out,))
        eps, var = split_learned(out, x[0].shape[1], 1, "SR model output")
        return Prediction((eps,), (var,))

    return Denoiser(fn, variance)


def denoise(model_fn: ModelFn, x: Tensors, schedule: Schedule, i: int, clip: bool) -> tuple[Tensors, Tensors, Prediction]:
    """(x̂0, ε, raw prediction) at schedule index i (the model sees training timestep
    `schedule.timesteps[i]`). With `clip`, x̂0 is clamped to [-1, 1] and ε re-derived from it, so the
    sampler's update stays consistent (guided-diffusion's clip_denoised)."""
    t = torch.full((x[0].shape[0],), schedule.timesteps[i], dtype=torch.long, device=x[0].device)
    pred = as_prediction(model_fn(x, t))
    if len(pred.eps) != len(x):
        raise ValueError(f"model returned {len(pred.eps)} outputs for {len(x)} inputs")
    ac = float(schedule.alphas_cumprod[i])
    x0 = tuple(predict_x0(xi, e, ac) for xi, e in zip(x, pred.eps))
    eps = pred.eps
    if clip:
        x0 = tuple(v.clamp(-1, 1) for v in x0)
        eps = tuple(predict_eps(xi, v, ac) for xi, v in zip(x, x0))
    return x0, eps, pred
