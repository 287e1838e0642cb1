"""Generic building blocks shared by the MM-UNet and the super-resolution U-Net.

Names and semantics follow guided-diffusion / MM-Diffusion so that state dicts line up; the
implementations are our own. Keep these names stable: other model modules import them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

__all__ = [
    "GroupNorm32",
    "avg_pool_nd",
    "conv_nd",
    "linear",
    "maybe_checkpoint",
    "normalization",
    "timestep_embedding",
    "zero_module",
]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N, dim] of (possibly fractional) timesteps: cos half first, then sin.

    Computed in float32 whatever the autocast state, as the original does.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (output projections start as identity residuals)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype.

    Statistics over large groups lose precision in half types; the originals normalise in fp32.
    State-dict keys are the plain `weight`/`bias` of nn.GroupNorm (guided-diffusion naming).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


def normalization(channels: int, groups: int = 32) -> GroupNorm32:
    """The standard normalisation layer of both U-Nets: 32 groups, fp32 statistics."""
    return GroupNorm32(groups, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """nn.Conv1d / Conv2d / Conv3d by dimensionality."""
    if dims == 1:
        return nn.Conv1d(*args, **kwargs)
    if dims == 2:
        return nn.Conv2d(*args, **kwargs)
    if dims == 3:
        return nn.Conv3d(*args, **kwargs)
    raise ValueError(f"unsupported dimensions: {dims}")


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """nn.AvgPool1d / 2d / 3d by dimensionality."""
    if dims == 1:
        return nn.AvgPool1d(*args, **kwargs)
    if dims == 2:
        return nn.AvgPool2d(*args, **kwargs)
    if dims == 3:
        return nn.AvgPool3d(*args, **kwargs)
    raise ValueError(f"unsupported dimensions: {dims}")


def linear(*args, **kwargs) -> nn.Linear:
    return nn.Linear(*args, **kwargs)


def maybe_checkpoint(fn: Callable, *args, enabled: bool):
    """Run `fn(*args)`, recomputing it in backward when `enabled` and gradients are needed.

    Non-reentrant torch checkpointing: works with autocast, keeps RNG state (dropout) consistent,
    and costs nothing at inference. The originals forced a hand-written reentrant checkpoint on
    every attention block; here it is opt-in.
    """
    if enabled and torch.is_grad_enabled():
        return _torch_checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
