"""Rotary position tables for the MMAudio network (interleaved pairs, as in the released weights).

Channels are rotated in adjacent pairs (2i, 2i+1), not in half-split form: the released checkpoints
were trained that way, so the pairing is part of checkpoint compatibility. The visual (CLIP) tokens
use a frequency scale of latent_len / clip_len so that a CLIP frame and the audio latent at the same
instant get the same angle, which is what lets the two streams attend by time.
"""

from __future__ import annotations

import torch

__all__ = ["rope_table", "rotate_pairs"]


def rope_table(length: int, head_dim: int, *, theta: float = 10000.0, scale: float = 1.0,
               device: torch.device | str | None = None) -> torch.Tensor:
    """[1, length, head_dim/2, 2] float32 table of (cos, sin) per position and channel pair.

    Computed in float32 with the same operation order as the original tables: at 345 positions an
    angle off by one float32 ulp already moves outputs by ~1e-5 relative.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    freqs = 1.0 / (theta ** exponents)
    freqs = freqs * scale
    positions = torch.arange(length, dtype=torch.float32, device=device)
    angles = positions[:, None] * freqs[None, :]
    return torch.stack([angles.cos(), angles.sin()], dim=-1).unsqueeze(0)


def rotate_pairs(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate [..., N, D] by a `rope_table` of N positions, in float32 whatever x's dtype (autocast off)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        pairs = x.float().unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        cos, sin = table[..., 0], table[..., 1]
        out = torch.stack([cos * even - sin * odd, sin * even + cos * odd], dim=-1)
        return out.flatten(-2).to(x.dtype)
