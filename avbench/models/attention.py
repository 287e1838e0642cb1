"""Attention kernels: one SDPA path for speed and an einsum reference path for tests.

All functions take heads-first tensors `[N, heads, T, head_dim]` (last dim contiguous), which is
the layout torch's fused SDPA kernels want. The reference path materialises the score matrix and
does the softmax in float32, as the original code did; it exists to check the fast path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",
    "attend",
    "qkv_attention",
    "window_index",
    "windowed_cross_attention",
]

BACKENDS = ("sdpa", "reference")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v over the last two dims; q [..., Tq, d], k/v [..., Tk, d]."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "reference":
        # The original scales q and k by d^-1/4 each ("more stable with f16").
        scale = 1.0 / math.sqrt(math.sqrt(q.shape[-1]))
        w = torch.einsum("...td,...sd->...ts", q * scale, k * scale)
        w = torch.softmax(w.float(), dim=-1).to(w.dtype)
        return torch.einsum("...ts,...sd->...td", w, v)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")


def qkv_attention(qkv: torch.Tensor, num_heads: int, *, legacy_order: bool = False,
                  backend: str = "sdpa") -> torch.Tensor:
    """Self-attention from a fused channels-first qkv tensor [N, 3*H*C, T] -> [N, H*C, T].

    `legacy_order=False` splits q/k/v first and heads second (guided-diffusion `QKVAttention`,
    MM-Diffusion `SingleModalQKVAttention`); `legacy_order=True` splits heads first
    (guided-diffusion `QKVAttentionLegacy`).
    """
    n, width, length = qkv.shape
    ch = width // (3 * num_heads)
    if legacy_order:
        x = qkv.reshape(n, num_heads, 3, ch, length)
        q, k, v = x.unbind(2)
    else:
        x = qkv.reshape(n, 3, num_heads, ch, length)
        q, k, v = x.unbind(1)
    # [N, H, C, T] -> [N, H, T, C] with the head dim contiguous for the fused kernels.
    q, k, v = (t.transpose(-1, -2).contiguous() for t in (q, k, v))
    out = attend(q, k, v, backend)
    return out.transpose(-1, -2).reshape(n, num_heads * ch, length)


def window_index(frames: int, window: int, shift: int, device=None) -> torch.Tensor:
    """[frames, window] frame indices each frame's window covers: (i + shift + w) mod frames."""
    i = torch.arange(frames, device=device)[:, None]
    w = torch.arange(window, device=device)[None, :]
    return (i + shift + w) % frames


def windowed_cross_attention(
    vq: torch.Tensor, vk: torch.Tensor, vv: torch.Tensor,
    aq: torch.Tensor, ak: torch.Tensor, av: torch.Tensor,
    *, window: int, shift: int = 0, index: torch.Tensor | None = None, backend: str = "sdpa",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random-shift windowed audio-video attention for all frames at once.

    Video tensors are [B, F, P, heads, d] (P = pixels per frame), audio tensors [B, F, A, heads, d]
    (A = audio tokens per frame). Video tokens of frame i attend to the audio tokens of frames
    i+shift … i+shift+window-1 (cyclic); audio tokens of frame i attend to the video tokens of the
    same frames. `index` ([F, window], from `window_index`) may replace `shift`: passing a tensor
    lets a compiled caller change the shift without recompiling. Returns video [B, F, P, heads, d]
    and audio [B, F, A, heads, d].
    """
    b, f, p, h, d = vq.shape
    a = aq.shape[2]

    def heads_first(x: torch.Tensor) -> torch.Tensor:  # [B, F, T, H, d] -> [B*F, H, T, d]
        return x.permute(0, 1, 3, 2, 4).reshape(b * f, h, x.shape[2], d)

    if window >= f:
        # Every window is the whole clip: one attention per sample, no gathered copies.
        def flat(x):  # [B, F, T, H, d] -> [B, H, F*T, d]
            return x.permute(0, 3, 1, 2, 4).reshape(b, h, f * x.shape[2], d)

        vo = attend(flat(vq), flat(ak), flat(av), backend)
        ao = attend(flat(aq), flat(vk), flat(vv), backend)
        vo = vo.reshape(b, h, f, p, d).permute(0, 2, 3, 1, 4)
        ao = ao.reshape(b, h, f, a, d).permute(0, 2, 3, 1, 4)
        return vo, ao

    idx = window_index(f, window, shift, device=vq.device) if index is None else index

    def gather(x: torch.Tensor) -> torch.Tensor:  # [B, F, T, H, d] -> [B*F, H, window*T, d]
        g = x[:, idx]  # [B, F, window, T, H, d]
        return g.permute(0, 1, 4, 2, 3, 5).reshape(b * f, h, window * x.shape[2], d)

    vo = attend(heads_first(vq), gather(ak), gather(av), backend)
    ao = attend(heads_first(aq), gather(vk), gather(vv), backend)
    vo = vo.reshape(b, f, h, p, d).transpose(2, 3)
    ao = ao.reshape(b, f, h, a, d).transpose(2, 3)
    return vo, ao
