"""Magnitude-preserving 1-D blocks of MMAudio's audio VAE (after Karras et al., EDM2, 2024).

The VAE has no normalisation layers: every convolution uses a weight normalised to unit norm per
output channel (scaled by 1/sqrt(fan_in)), activations are pixel-normalised before each residual
block, and sums/SiLU are rescaled so unit-variance inputs stay unit variance. The released files store
the raw (un-normalised) weights, so the normalisation is applied on every forward here; doing it on
the fly instead of folding it in once keeps a loaded module and its state dict in one meaning.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttnBlock1D", "Downsample1D", "MPConv1D", "ResnetBlock1D", "Upsample1D", "mp_silu",
           "mp_sum", "unit_norm"]

_EPS = 1e-4
_RESIDUAL_T = 0.3  # weight of the branch in every residual mix of this VAE


def unit_norm(x: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """x / (eps + rms-scaled L2 norm over `dim`), the norm taken in float32."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True, dtype=torch.float32)
    reduced = math.prod(x.shape[d] for d in dims)
    return x / (_EPS + norm / math.sqrt(reduced)).to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    # 0.596 is the standard deviation of silu(N(0, 1)).
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


class MPConv1D(nn.Module):
    """Bias-free 1-D convolution ('same' padding) with forced weight normalisation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size))

    def effective_weight(self) -> torch.Tensor:
        w = self.weight.float()
        fan_in = w[0].numel()
        w = unit_norm(w, dim=tuple(range(1, w.ndim))) / math.sqrt(fan_in)
        return w.to(self.weight.dtype)

    def forward(self, x: torch.Tensor, gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        w = self.effective_weight() * gain
        return F.conv1d(x, w, padding=w.shape[-1] // 2)


class ResnetBlock1D(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = MPConv1D(in_dim, out_dim, kernel_size)
        self.conv2 = MPConv1D(out_dim, out_dim, kernel_size)
        # Key name of the released files for the 1x1 projection when the width changes.
        self.nin_shortcut = MPConv1D(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = unit_norm(x, dim=1)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return mp_sum(skip, h, _RESIDUAL_T)


class AttnBlock1D(nn.Module):
    """Self-attention over time with cosine-normalised q/k/v (one head in the released models).

    The qkv projection's output channels are laid out (head, channel, q|k|v), interleaved per channel.
    """

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = MPConv1D(channels, 3 * channels, 1)
        self.proj_out = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        y = self.qkv(x).view(b, self.num_heads, c // self.num_heads, 3, t)
        y = unit_norm(y, dim=2)
        q, k, v = (y[:, :, :, i].transpose(-1, -2) for i in range(3))  # [b, heads, t, c/heads]
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(b, c, t)
        return mp_sum(x, self.proj_out(h), _RESIDUAL_T)


class Downsample1D(nn.Module):
    """Halves time: 1x1 conv, average pool of 2 (odd lengths lose their last frame), 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MPConv1D(channels, channels, 1)
        self.conv2 = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class Upsample1D(nn.Module):
    """Doubles time: nearest-exact repeat, then a 3-tap conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = MPConv1D(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))
