"""The 64→256 super-resolution U-Net (guided-diffusion's upsampler, as MM-Diffusion uses it).

The noisy high-resolution frame and the bilinearly upsampled low-resolution frame are concatenated on
the channel axis and run through an ADM U-Net (class-conditional only if asked) that predicts the noise
and, with learned sigma, the variance interpolation: the output has twice the image channels.

Parameter names and shapes follow the original `ImageSuperResModel` exactly, so its checkpoints load
with a strict `load_state_dict`. The function is the same too (parity fixture); what differs is speed:
attention goes through `scaled_dot_product_attention` in a token-major layout, nothing is cast by hand
except GroupNorm statistics (so bf16 autocast with fp32 weights just works), and gradient checkpointing
is off unless asked for (the original forced it on every attention block).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import ModelConfigError
from avbench.models.layers import GroupNorm32, maybe_checkpoint, timestep_embedding, zero_module


@dataclass(frozen=True)
class SuperResConfig:
    """Architecture of the upsampler. `attention_ds` are downsampling factors (1 = full resolution)."""

    large_size: int = 256
    small_size: int = 64
    in_channels: int = 3
    model_channels: int = 192
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    attention_ds: tuple[int, ...] = (8, 16, 32)
    num_heads: int = 4
    # When set, the head count is channels // num_head_channels (overrides num_heads).
    num_head_channels: int | None = None
    num_heads_upsample: int | None = None
    learn_sigma: bool = True
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    # "legacy" = heads split before q/k/v (QKVAttentionLegacy, what MM-Diffusion's SR model uses);
    # "qkv_first" = q/k/v split before heads (QKVAttention, use_new_attention_order=True).
    attention_order: str = "legacy"
    num_classes: int | None = None
    num_groups: int = 32
    # Runtime choice, not architecture: recompute each block in backward to save memory.
    use_checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.attention_order not in ("legacy", "qkv_first"):
            raise ModelConfigError(f"attention_order must be 'legacy' or 'qkv_first', got {self.attention_order!r}")
        if self.large_size % self.small_size:
            raise ModelConfigError(f"large_size {self.large_size} is not a multiple of small_size {self.small_size}")
        if self.large_size % 2 ** (len(self.channel_mult) - 1):
            raise ModelConfigError(
                f"large_size {self.large_size} must be divisible by 2**{len(self.channel_mult) - 1}")
        for mult in self.channel_mult:
            if (mult * self.model_channels) % self.num_groups:
                raise ModelConfigError(f"channels {mult * self.model_channels} not divisible by {self.num_groups} groups")

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @classmethod
    def seed(cls) -> SuperResConfig:
        """MM-Diffusion's released SR model (AIST++_SR.pt / landscape): 311,027,910 parameters."""
        return cls()

    @classmethod
    def fixture_small(cls) -> SuperResConfig:
        """The small model of `sr_small_parity.npz` (8,676,390 parameters)."""
        return cls(model_channels=32)

    @classmethod
    def tiny(cls) -> SuperResConfig:
        """A 32→64 toy for fast tests of the training and sampling plumbing."""
        return cls(
            large_size=64, small_size=32, model_channels=32, num_res_blocks=1,
            channel_mult=(1, 2), attention_ds=(2,), num_heads=2,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_ds"] = list(self.attention_ds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SuperResConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelConfigError(f"unknown SuperResConfig fields {unknown}; known: {sorted(known)}")
        d = dict(d)
        for key in ("channel_mult", "attention_ds"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(nn.Module):
    """Norm-SiLU-conv twice, timestep-conditioned (FiLM scale/shift or additive); optional 2× resampling."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, cfg: SuperResConfig,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.use_scale_shift_norm = cfg.use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(cfg.num_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * out_channels if cfg.use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(cfg.num_groups, out_channels), nn.SiLU(), nn.Dropout(cfg.dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            # Resample between the activation and the conv, as the original does, so the conv runs
            # at the output resolution.
            h = self.in_layers[2](self.h_upd(self.in_layers[1](self.in_layers[0](x))))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions. Weights keep the original Conv1d shapes (for
    checkpoint compatibility) but are applied as linear maps on [B, T, C] tokens, so SDPA receives
    [B, heads, T, head_dim] views with unit stride on head_dim, which its fused kernels accept."""

    def __init__(self, channels: int, num_heads: int, cfg: SuperResConfig):
        super().__init__()
        if cfg.num_head_channels is not None:
            if channels % cfg.num_head_channels:
                raise ModelConfigError(f"channels {channels} not divisible by num_head_channels {cfg.num_head_channels}")
            num_heads = channels // cfg.num_head_channels
        if channels % num_heads:
            raise ModelConfigError(f"channels {channels} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.legacy_order = cfg.attention_order == "legacy"
        self.norm = GroupNorm32(cfg.num_groups, channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        tokens = self.norm(x).transpose(1, 2)  # [B, T, C]
        qkv = F.linear(tokens, self.qkv.weight[:, :, 0], self.qkv.bias)  # [B, T, 3C]
        heads, head_dim = self.num_heads, c // self.num_heads
        if self.legacy_order:  # channel = head * 3 * head_dim + which * head_dim + i
            qkv = qkv.view(b, -1, heads, 3, head_dim).permute(3, 0, 2, 1, 4)
        else:  # channel = which * C + head * head_dim + i
            qkv = qkv.view(b, -1, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, T, head_dim]
        # The original scales q and k by head_dim**-0.25 each; SDPA's default head_dim**-0.5 is the same.
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(1, 2).reshape(b, -1, c)  # [B, T, C], channel = head * head_dim + i
        h = F.linear(a, self.proj_out.weight[:, :, 0], self.proj_out.bias).transpose(1, 2)
        return (x + h).reshape(b, c, *spatial)


class TimestepSequential(nn.Sequential):
    """A U-Net stage: passes the timestep embedding to the residual blocks only."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class SuperResUNet(nn.Module):
    """forward(x [B,3,H,W] noisy frame, t [B], low_res [B,3,h,w]) -> [B,6,H,W] (eps, variance)."""

    def __init__(self, cfg: SuperResConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = cfg.use_checkpoint
        mc = cfg.model_channels
        emb_dim = 4 * mc
        heads_up = cfg.num_heads_upsample or cfg.num_heads

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.num_classes is not None:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)

        ch = input_ch = cfg.channel_mult[0] * mc
        # The low-resolution frame, upsampled, doubles the input channels.
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(2 * cfg.in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, cfg)]
                ch = mult * mc
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.num_heads, cfg))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = (ResBlock(ch, emb_dim, ch, cfg, down=True) if cfg.resblock_updown
                        else Downsample(ch, use_conv=True))
                self.input_blocks.append(TimestepSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepSequential(
            ResBlock(ch, emb_dim, ch, cfg), AttentionBlock(ch, cfg.num_heads, cfg), ResBlock(ch, emb_dim, ch, cfg)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, mult * mc, cfg)]
                ch = mult * mc
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, heads_up, cfg))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, ch, cfg, up=True) if cfg.resblock_updown
                                  else Upsample(ch, use_conv=True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(cfg.num_groups, ch), nn.SiLU(),
            zero_module(nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1)),
        )

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.gradient_checkpointing = enabled

    def _run(self, block: TimestepSequential, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(block, h, emb, enabled=self.gradient_checkpointing and self.training)

    def forward(self, x: torch.Tensor, t: torch.Tensor, low_res: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1] != self.cfg.in_channels or low_res.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"expected x [B,{self.cfg.in_channels},H,W] and low_res [B,{self.cfg.in_channels},h,w] "
                f"with the same B, got {tuple(x.shape)} and {tuple(low_res.shape)}"
            )
        if (y is None) != (self.cfg.num_classes is None):
            raise ValueError("pass class labels y exactly when the config has num_classes")
        upsampled = F.interpolate(low_res, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = torch.cat([x, upsampled.to(x.dtype)], dim=1)

        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)

        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, emb)
            skips.append(h)
        h = self._run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)

