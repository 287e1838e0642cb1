"""The coupled MM-UNet of MM-Diffusion (Ruan et al., CVPR 2023), state-dict compatible.

`MMUNet(cfg).forward(video [B,F,3,H,W], audio [B,1,L], t [B]) -> (video_eps, audio_eps)`.
Presets: `MMUNetConfig.seed()` (the seed project's / released 64×64 configuration, 133,675,524
parameters), `.fixture_small()` (the parity fixture), `.tiny()` (CPU training tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn

from avbench.errors import ModelConfigError

from .attention import BACKENDS
from .layers import timestep_embedding, zero_module
from .mm_blocks import AudioConv, CrossAttentionBlock, InitialBlock, MMNorm, MMResBlock, VideoPointwise

__all__ = ["MMUNet", "MMUNetConfig"]

_MAX_DILATION_EXP = 10  # the original cycles audio dilations 2**(i % 10)


@dataclass(frozen=True)
class MMUNetConfig:
    video_size: tuple[int, int, int, int] = (16, 3, 64, 64)  # F, C, H, W
    audio_size: tuple[int, int] = (1, 25600)  # C, L
    model_channels: int = 128
    video_out_channels: int = 3
    audio_out_channels: int = 1
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    cross_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    cross_attention_windows: tuple[int, ...] = (1, 4, 8)
    cross_attention_shift: bool = True
    # The original also shifts at inference; we default to no shift in eval (reproducible sampling).
    shift_in_eval: bool = False
    # The original adds a full-window cross-attention to the middle block iff windows == [1, 4, 8].
    middle_cross_attention: bool = True
    video_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    audio_attention_resolutions: tuple[int, ...] = ()  # the middle block always has audio attention
    num_heads: int = 4  # resblock self-attention heads (the original ignores num_head_channels there)
    num_head_channels: int = 64  # cross-attention channels per head (-1: use num_heads)
    dropout: float = 0.1
    use_scale_shift_norm: bool = True
    norm_groups: int = 32
    # Runtime choices; they do not change the function or the state dict.
    attention_backend: str = "sdpa"
    # False | True ("all") | "attention" (blocks with attention) | "selective" (those plus every
    # block at full resolution, where activations are largest)
    use_checkpoint: bool | str = False
    channels_last: bool | None = None  # None: channels_last_3d on CUDA, plain layout elsewhere

    @classmethod
    def seed(cls, **overrides) -> "MMUNetConfig":
        """The seed / released 64×64 configuration."""
        return replace(cls(), **overrides)

    @classmethod
    def fixture_small(cls, **overrides) -> "MMUNetConfig":
        """The parity fixture: seed config with 32 channels, 32 per cross-attention head, no shift."""
        return replace(cls(model_channels=32, num_head_channels=32, cross_attention_shift=False), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "MMUNetConfig":
        """Loader-shaped (16×64×64 video, 25600 audio samples) but small: for CPU training tests."""
        # Attention only at the 8x8 level (ds 8) keeps a CPU training step cheap; every block
        # type (resblock up/down, spatial/temporal/audio attention, shifted and full-window
        # cross-attention) is still present.
        base = cls(model_channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1, norm_groups=4,
                   cross_attention_resolutions=(8,), cross_attention_windows=(4,),
                   video_attention_resolutions=(8,), num_heads=2, num_head_channels=8, dropout=0.0)
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MMUNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelConfigError(f"unknown MMUNetConfig fields {unknown}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def validate(self) -> None:
        f, _, h, w = self.video_size
        levels = len(self.channel_mult)
        if self.attention_backend not in BACKENDS:
            raise ModelConfigError(f"attention_backend must be one of {BACKENDS}, got {self.attention_backend!r}")
        if len(self.cross_attention_windows) != len(self.cross_attention_resolutions):
            raise ModelConfigError("cross_attention_windows needs one window per cross_attention_resolutions entry")
        if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
            raise ModelConfigError(f"video {h}x{w} is not divisible by 2**{levels - 1} (channel_mult has {levels} levels)")
        if self.audio_size[1] % (4 ** (levels - 1) * f):
            raise ModelConfigError(f"audio length {self.audio_size[1]} must be divisible by 4**{levels - 1} * {f} frames")
        for m in self.channel_mult:
            if (m * self.model_channels) % self.norm_groups:
                raise ModelConfigError(f"{m * self.model_channels} channels not divisible by norm_groups={self.norm_groups}")
        if self.use_checkpoint not in (False, True, "all", "attention", "selective"):
            raise ModelConfigError("use_checkpoint must be False, True/'all', 'attention' or 'selective'")


class _Stage(nn.ModuleList):
    """One entry of input_blocks / output_blocks: blocks applied in order to (video, audio)."""

    def forward(self, video, audio, emb, generator=None):
        for block in self:
            video, audio = block(video, audio, emb, generator)
        return video, audio


class MMUNet(nn.Module):
    """Coupled video/audio U-Net with shared timestep embedding and cross-modal attention."""

    def __init__(self, cfg: MMUNetConfig | None = None):
        super().__init__()
        cfg = cfg or MMUNetConfig.seed()
        cfg.validate()
        self.cfg = cfg
        mc = cfg.model_channels
        emb_ch = mc  # MM-Diffusion uses model_channels (not 4×) for the embedding
        ckpt_all = cfg.use_checkpoint in (True, "all")
        ckpt_attn = bool(cfg.use_checkpoint)
        ckpt_top = cfg.use_checkpoint == "selective"
        ds = 1  # current downsampling rate, read by resblock() below
        common = dict(norm_groups=cfg.norm_groups, backend=cfg.attention_backend)

        def resblock(ch, out, dil, **kw):
            return MMResBlock(ch, emb_ch, cfg.dropout, out, audio_dilation=2 ** (dil % _MAX_DILATION_EXP),
                              use_scale_shift_norm=cfg.use_scale_shift_norm, num_heads=cfg.num_heads,
                              use_checkpoint=ckpt_all or (ckpt_attn and kw.get("video_attention", False))
                              or (ckpt_top and ds == 1),
                              **common, **kw)

        def cross(ch, window, shift):
            return CrossAttentionBlock(ch, num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
                                       local_window=window, window_shift=shift, shift_in_eval=cfg.shift_in_eval,
                                       use_checkpoint=ckpt_attn, **common)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        ch = input_ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([_Stage([InitialBlock(cfg.video_size[1], cfg.audio_size[0], ch)])])
        skip_chans = [ch]
        ds, dil = 1, 1
        levels = len(cfg.channel_mult)
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                out = int(mult * mc)
                blocks = [resblock(ch, out, dil, video_attention=ds in cfg.video_attention_resolutions,
                                   audio_attention=ds in cfg.audio_attention_resolutions)]
                dil += 1
                ch = out
                if ds in cfg.cross_attention_resolutions:
                    win = cfg.cross_attention_windows[cfg.cross_attention_resolutions.index(ds)]
                    blocks.append(cross(ch, win, cfg.cross_attention_shift))
                self.input_blocks.append(_Stage(blocks))
                skip_chans.append(ch)
            if level != levels - 1:
                self.input_blocks.append(_Stage([resblock(ch, ch, dil, down=True)]))
                dil += 1
                skip_chans.append(ch)
                ds *= 2

        middle = [resblock(ch, ch, dil, video_attention=True, audio_attention=True)]
        if cfg.middle_cross_attention:
            middle.append(cross(ch, cfg.video_size[0], False))
        middle.append(resblock(ch, ch, dil, video_attention=True, audio_attention=True))
        self.middle_blocks = _Stage(middle)

        self.output_blocks = nn.ModuleList()
        dil -= 1
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                out = int(mc * mult)
                blocks = [resblock(ch + skip_chans.pop(), out, dil,
                                   video_attention=ds in cfg.video_attention_resolutions,
                                   audio_attention=ds in cfg.audio_attention_resolutions)]
                dil -= 1
                ch = out
                if ds in cfg.cross_attention_resolutions:
                    win = cfg.cross_attention_windows[cfg.cross_attention_resolutions.index(ds)]
                    blocks.append(cross(ch, win, cfg.cross_attention_shift))
                if level and i == cfg.num_res_blocks:
                    blocks.append(resblock(ch, ch, dil, up=True))
                    ds //= 2
                self.output_blocks.append(_Stage(blocks))

        self.audio_out = nn.Sequential(MMNorm(ch, cfg.norm_groups), nn.SiLU(),
                                       zero_module(AudioConv(input_ch, cfg.audio_out_channels, 3)))
        self.video_out = nn.Sequential(MMNorm(ch, cfg.norm_groups), nn.SiLU(),
                                       zero_module(VideoPointwise(input_ch, cfg.video_out_channels, 3)))

    def forward(self, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, *,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """video [B, F, C, H, W], audio [B, C, L], t [B] -> noise predictions of the same shapes.

        `generator` seeds the cross-attention window shifts (when they are active).
        """
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        v = video.permute(0, 2, 1, 3, 4)  # [B, C, F, H, W]
        channels_last = self.cfg.channels_last
        if channels_last is None:
            channels_last = video.is_cuda  # NHWC tensor-core kernels; CPU convs prefer the plain layout
        if channels_last:
            v = v.contiguous(memory_format=torch.channels_last_3d)
        a = audio
        skips = []
        for stage in self.input_blocks:
            v, a = stage(v, a, emb, generator)
            skips.append((v, a))
        v, a = self.middle_blocks(v, a, emb, generator)
        for stage in self.output_blocks:
            sv, sa = skips.pop()
            v, a = stage(torch.cat([v, sv], dim=1), torch.cat([a, sa], dim=1), emb, generator)
        return self.video_out(v).permute(0, 2, 1, 3, 4), self.audio_out(a)

    def compile_blocks(self, **compile_kwargs) -> "MMUNet":
        """torch.compile each residual and cross-attention block in place (fuses GroupNorm,
        scale-shift and SiLU; window shifts reach the compiled code as tensors, so they never
        trigger recompilation). State dict and function are unchanged."""
        import torch._dynamo

        # Blocks share one code object, so dynamo's per-code cache must hold every block shape.
        blocks = [m for m in self.modules() if isinstance(m, (MMResBlock, CrossAttentionBlock))]
        limit = max(torch._dynamo.config.cache_size_limit, 2 * len(blocks))
        torch._dynamo.config.cache_size_limit = limit
        torch._dynamo.config.accumulated_cache_size_limit = max(
            torch._dynamo.config.accumulated_cache_size_limit, 4 * limit)
        for m in blocks:
            m._forward = torch.compile(m._forward, **compile_kwargs)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
