"""The Gaussian forward process and the training losses (ε-MSE and the hybrid learned-variance loss).

Tensors in a tuple are the modalities of one joint sample (video, audio); they share the timestep.
Per-timestep coefficients come from a `Schedule` and are indexed with the integer timesteps `t` [B].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from avbench.diffusion.schedules import Schedule


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped [B, 1, 1, …] to broadcast against `like`."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε."""
    return _at(schedule.sqrt_alphas_cumprod, t, x0) * x0 + _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """x0 implied by ε at a timestep with ᾱ = alpha_bar (a scalar: all samplers step a batch together)."""
    return (x_t - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)


def predict_eps(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    return (x_t - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and clipped log-variance of q(x_{t-1} | x_t, x0) (schedule-local step indices `t`)."""
    mean = _at(schedule.posterior_mean_coef1, t, x_t) * x0 + _at(schedule.posterior_mean_coef2, t, x_t) * x_t
    return mean, _at(schedule.posterior_log_variance_clipped, t, x_t).expand_as(x_t)


def learned_log_variance(var_values: torch.Tensor, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Improved-DDPM `learned_range`: the output v ∈ [-1, 1] interpolates log σ² between the posterior
    variance (v = -1) and β_t (v = 1)."""
    min_log = _at(schedule.posterior_log_variance_clipped, t, var_values)
    max_log = _at(torch.log(schedule.betas), t, var_values)
    frac = (var_values + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log p(x) of 8-bit data in [-1, 1] under N(mean, e^{2·log_scale}) integrated over each pixel bin."""
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (x - mean + 1 / 255.0)
    lower = inv_std * (x - mean - 1 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)
    delta = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12)
    # The edge bins extend to ±∞, so they take the whole tail.
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, torch.log(delta)))


def vb_term(
    eps: torch.Tensor, var_values: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: Schedule
) -> torch.Tensor:
    """Per-sample variational-bound term in bits: KL(q(x_{t-1}|x_t,x0) ‖ p(x_{t-1}|x_t)), or the decoder NLL
    at t = 0."""
    true_mean, true_logvar = q_posterior(x0, x_t, t, schedule)
    x0_hat = x_t * _at(1 / schedule.alphas_cumprod.sqrt(), t, x_t) - eps * _at(((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt(), t, x_t)
    model_mean, _ = q_posterior(x0_hat, x_t, t, schedule)
    model_logvar = learned_log_variance(var_values, t, schedule)
    kl = mean_flat(normal_kl(true_mean, true_logvar, model_mean, model_logvar)) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar)) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def training_loss(
    model_fn: Callable[[tuple[torch.Tensor, ...], torch.Tensor], Sequence[torch.Tensor]],
    x0: Sequence[torch.Tensor],
    t: torch.Tensor,
    schedule: Schedule,
    *,
    noise: Sequence[torch.Tensor] | None = None,
    learned_sigma: bool = False,
    names: Sequence[str] | None = None,
    channel_dim: int = 1,
    rescale_vb: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-sample losses of an ε-prediction model on a joint sample.

    `loss` = Σ over modalities of MSE(ε̂, ε) (the seed's MSE(video) + MSE(audio)). With `learned_sigma`
    each model output carries 2C channels on `channel_dim` (ε, then variance values) and the hybrid loss
    adds the variational-bound term computed with ε̂ frozen, so the VB term only trains the variance.
    `rescale_vb` multiplies it by T/1000 (improved DDPM's `rescale_learned_sigmas`); the seed's SR training
    left that flag off (`DiffusionConfig.rescale_vb`). Returns [B] tensors: `loss`, `mse_<name>`, `vb_<name>`.
    """
    x0 = tuple(x0)
    names = tuple(names) if names is not None else tuple(str(i) for i in range(len(x0)))
    noise = tuple(noise) if noise is not None else tuple(torch.randn_like(x) for x in x0)
    x_t = tuple(q_sample(x, t, n, schedule) for x, n in zip(x0, noise))
    out = tuple(model_fn(x_t, t))
    if len(out) != len(x0):
        raise ValueError(f"model returned {len(out)} outputs for {len(x0)} modalities")
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros(x0[0].shape[0], device=x0[0].device, dtype=x0[0].dtype)
    for name, x, xt, n, o in zip(names, x0, x_t, noise, out):
        if learned_sigma:
            eps, var_values = o.split(x.shape[channel_dim], dim=channel_dim)
            vb = vb_term(eps.detach(), var_values, x, xt, t, schedule)
            if rescale_vb:
                vb = vb * (schedule.num_steps / 1000.0)
            terms[f"vb_{name}"] = vb
            total = total + vb
        else:
            eps = o
        if eps.shape != n.shape:
            raise ValueError(f"model output for {name!r} has shape {tuple(eps.shape)}, expected {tuple(n.shape)}")
        mse = mean_flat((eps - n) ** 2)
        terms[f"mse_{name}"] = mse
        total = total + mse
    terms["loss"] = total
    return terms
