"""A problem with a known answer for checking samplers: data ~ N(mu, s²) in every element.

Its exact denoiser is E[x0 | x_t] = mu + √ᾱ s² / (ᾱ s² + 1 - ᾱ) · (x_t - √ᾱ mu), and its probability-flow
ODE keeps the standardised value (x_t - √ᾱ mu) / √(ᾱ s² + 1 - ᾱ) constant, so a deterministic sampler has
an exact target and an ancestral one exact marginal statistics.
"""

from __future__ import annotations

import math

import torch

from avbench.diffusion.schedules import Schedule


def gaussian_denoiser(schedule: Schedule, mu: float, s: float, calls: list[int] | None = None):
    """Exact ε-prediction `model_fn(x, t)` for a model trained with `schedule`; appends t to `calls`."""

    def model_fn(x, t):
        if not bool((t == t[0]).all()):
            raise ValueError("the toy denoiser expects one timestep per batch")
        if calls is not None:
            calls.append(int(t[0]))
        ac = float(schedule.alphas_cumprod[int(t[0])])
        out = []
        for xt in x:
            x0 = mu + math.sqrt(ac) * s**2 / (ac * s**2 + 1 - ac) * (xt - math.sqrt(ac) * mu)
            out.append((xt - math.sqrt(ac) * x0) / math.sqrt(1 - ac))
        return tuple(out)

    return model_fn


def exact_sample(x: torch.Tensor, sampled: Schedule, mu: float, s: float) -> torch.Tensor:
    """What an exact ODE solver returns from noise `x` over a respaced schedule: the flow from its
    noisiest to its cleanest timestep, then the exact denoiser there (every sampler ends that way)."""
    a_start, a_end = float(sampled.alphas_cumprod[-1]), float(sampled.alphas_cumprod[0])
    z = (x - math.sqrt(a_start) * mu) / math.sqrt(a_start * s**2 + 1 - a_start)
    x_end = math.sqrt(a_end) * mu + z * math.sqrt(a_end * s**2 + 1 - a_end)
    return mu + math.sqrt(a_end) * s**2 / (a_end * s**2 + 1 - a_end) * (x_end - math.sqrt(a_end) * mu)
