"""Layers of the MMAudio flow network: gated feed-forwards, the per-stream DiT block, the joint block.

Attribute names (`w1`/`w2`/`w3`, `adaLN_modulation`, `linear1`, `q_norm`, ...) and the Sequential
indices are the released checkpoints' key names; they are kept so a `.pth` loads with no renaming.
Tokens stay channel-last ([B, N, C]) end to end; the 1-d convolutions transpose around their call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avbench.models.mmaudio.rope import rotate_pairs

__all__ = [
    "FinalBlock",
    "GatedFFN",
    "JointBlock",
    "StreamBlock",
    "TimeEmbedding",
    "TokenConv1d",
    "gated_width",
]


class TokenConv1d(nn.Conv1d):
    """Conv1d over the token axis of channel-last [B, N, C] input (same parameters as nn.Conv1d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def gated_width(width: int, multiple: int = 256) -> int:
    """Hidden width of a gated FFN asked for `width`: two thirds of it (the gate doubles the
    parameters), rounded up to a multiple of 256 as in SD3's reference MLP the weights follow."""
    two_thirds = int(2 * width / 3)
    return -(-two_thirds // multiple) * multiple


class GatedFFN(nn.Module):
    """SwiGLU feed-forward w2(silu(w1 x) * w3 x), bias-free; kernel > 1 mixes neighbouring tokens."""

    def __init__(self, dim: int, width: int, kernel: int = 1):
        super().__init__()
        hidden = gated_width(width)
        if kernel == 1:
            def make(i, o):
                return nn.Linear(i, o, bias=False)
        else:
            def make(i, o):
                return TokenConv1d(i, o, kernel, padding=kernel // 2, bias=False)
        self.w1 = make(dim, hidden)
        self.w2 = make(hidden, dim)
        self.w3 = make(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the flow time t, then a two-layer MLP.

    Frequencies are 10000^(-2i/F) · (10000 / max_period): v1 weights use F=256, max_period 10000;
    v2 weights use F=hidden, max_period 1 (t lives in [0, 1], so v1's slowest waves barely move).
    """

    def __init__(self, dim: int, features: int, max_period: float):
        super().__init__()
        self.features = features
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.register_buffer("freqs", self.make_freqs(), persistent=False)

    def make_freqs(self, device: torch.device | str | None = None) -> torch.Tensor:
        exponents = torch.arange(0, self.features, 2, dtype=torch.float32, device=device) / self.features
        return (10000 / self.max_period) * (1.0 / (10000 ** exponents))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        features = torch.cat([angles.cos(), angles.sin()], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA over heads-first [B, H, N, D] tensors, merged back to channel-last [B, N, H·D]."""
    out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
    return out.transpose(1, 2).flatten(2)


class _QKV(nn.Module):
    """Fused q/k/v projection with RMS-normalised q and k per head.

    The fused output is laid out [heads, head_dim, (q, k, v)] (q/k/v innermost): that is how the
    released `qkv.weight` rows are ordered.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads)
        self.k_norm = nn.RMSNorm(dim // heads)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, -1, 3).transpose(1, 2).unbind(-1)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate_pairs(q, rope), rotate_pairs(k, rope)
        return q, k, v


class StreamBlock(nn.Module):
    """One stream's adaLN DiT block, split at the attention so streams can attend jointly.

    `pre_only` streams (the visual and text streams of the last joint block) only supply keys and
    values: nothing reads their outputs afterwards, so they have no output projection or FFN.
    `kernel` > 1 turns the output projection and FFN into token convolutions.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, *, pre_only: bool = False,
                 kernel: int = 3):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = _QKV(dim, heads)
        if not pre_only:
            if kernel == 1:
                self.linear1 = nn.Linear(dim, dim)
            else:
                self.linear1 = TokenConv1d(dim, dim, kernel, padding=kernel // 2)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
            self.ffn = GatedFFN(dim, int(dim * mlp_ratio), kernel)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (2 if pre_only else 6) * dim))

    def project(self, x: torch.Tensor, c: torch.Tensor, rope: torch.Tensor | None):
        """(q, k, v) for this stream, plus the modulation the second half needs (None if pre_only)."""
        mods = self.adaLN_modulation(c).chunk(2 if self.pre_only else 6, dim=-1)
        qkv = self.attn(_modulate(self.norm1(x), mods[0], mods[1]), rope)
        return qkv, (None if self.pre_only else mods[2:])

    def finish(self, x: torch.Tensor, attended: torch.Tensor, mods) -> torch.Tensor:
        if self.pre_only:
            return x
        gate_attn, shift_ffn, scale_ffn, gate_ffn = mods
        x = x + self.linear1(attended) * gate_attn
        return x + self.ffn(_modulate(self.norm2(x), shift_ffn, scale_ffn)) * gate_ffn

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
        qkv, mods = self.project(x, c, rope)
        return self.finish(x, attention(*qkv), mods)


class JointBlock(nn.Module):
    """Audio latents, CLIP tokens and text tokens attend over their concatenation, each with its own
    weights. Latents are modulated per token (time + sync features), the other streams globally."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, *, pre_only: bool = False):
        super().__init__()
        self.pre_only = pre_only
        self.latent_block = StreamBlock(dim, heads, mlp_ratio, kernel=3)
        self.clip_block = StreamBlock(dim, heads, mlp_ratio, pre_only=pre_only, kernel=3)
        self.text_block = StreamBlock(dim, heads, mlp_ratio, pre_only=pre_only, kernel=1)

    def forward(self, latent, clip, text, global_c, token_c, latent_rope, clip_rope):
        x_qkv, x_mods = self.latent_block.project(latent, token_c, latent_rope)
        c_qkv, c_mods = self.clip_block.project(clip, global_c, clip_rope)
        t_qkv, t_mods = self.text_block.project(text, global_c, None)
        q, k, v = (torch.cat(parts, dim=2) for parts in zip(x_qkv, c_qkv, t_qkv))
        x_out, c_out, t_out = attention(q, k, v).split([latent.shape[1], clip.shape[1], text.shape[1]], 1)
        latent = self.latent_block.finish(latent, x_out, x_mods)
        if not self.pre_only:
            clip = self.clip_block.finish(clip, c_out, c_mods)
            text = self.text_block.finish(text, t_out, t_mods)
        return latent, clip, text


class FinalBlock(nn.Module):
    """adaLN LayerNorm, then a width-7 token convolution down to the latent channels."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = TokenConv1d(dim, out_dim, 7, padding=3)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.conv(_modulate(self.norm(x), shift, scale))
