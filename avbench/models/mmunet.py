"""The coupled MM-UNet of MM-Diffusion (Ruan et al., CVPR 2023), state-dict compatible.

`MMUNet(cfg).forward(video [B,F,3,H,W], audio [B,1,L], t [B]) -> (video_eps, audio_eps)`.
Presets: `MMUNetConfig.seed()` (the seed project's / released 64×64 configuration, 133,675,524
parameters), `.fixture_small()` (the parity fixture), `.tiny()` (CPU training tests).

`LatentMMUNetConfig` is the same network on codec latents (the `latent` model kind): video
[F, Cv, H/8, W/8] from a per-frame image VAE, audio [Ca, Ta] from a 1-D audio VAE, cropped or padded
to a length the U-Net and the per-frame cross-attention chunks divide evenly (`audio_crop`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn

from avbench.errors import ModelConfigError

from .attention import BACKENDS
from .layers import timestep_embedding, zero_module
from .mm_blocks import AudioConv, CrossAttentionBlock, InitialBlock, MMNorm, MMResBlock, VideoPointwise

__all__ = ["LatentMMUNetConfig", "MMUNet", "MMUNetConfig", "audio_crop_for"]

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
    # audio length divisor per U-Net level (the original: 4 on waveforms) and the period of the
    # audio dilations 2**(i % cycle) (the original: 10); short latent sequences want 1 and a small cycle
    audio_downsample: int = 4
    audio_dilation_cycle: int = _MAX_DILATION_EXP
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
        d = self.audio_downsample
        if d < 1 or self.audio_dilation_cycle < 1:
            raise ModelConfigError("audio_downsample and audio_dilation_cycle must be at least 1")
        if self.audio_size[1] % (d ** (levels - 1) * f):
            raise ModelConfigError(f"audio length {self.audio_size[1]} must be divisible by {d}**{levels - 1} * {f} frames")
        for m in self.channel_mult:
            if (m * self.model_channels) % self.norm_groups:
                raise ModelConfigError(f"{m * self.model_channels} channels not divisible by norm_groups={self.norm_groups}")
        if self.use_checkpoint not in (False, True, "all", "attention", "selective"):
            raise ModelConfigError("use_checkpoint must be False, True/'all', 'attention' or 'selective'")


def audio_crop_for(latent_length: int, frames: int, multiple: int) -> tuple[int, int]:
    """(start, end): latents to drop from each end of a [.., latent_length] audio latent so the rest
    is a multiple of `multiple` (frames × the U-Net's total audio downsampling); negative values pad.

    The nearer multiple wins (a crop on a tie) and the change is split between both ends, so the
    centre stays put: frame k's cross-attention chunk then starts within half the change of frame k's
    true audio span at every k (sd-mmaudio16k: 50 latents → 48, one dropped per end, chunks of 3
    latents, each within one latent (32 ms) of its frame), where cropping one end only would drift by
    the whole change towards the other end.
    """
    if multiple < 1 or latent_length < 1:
        raise ModelConfigError(f"cannot fit an audio latent of length {latent_length} to multiples of {multiple}")
    lower = latent_length // multiple * multiple
    upper = lower + multiple
    target = lower if lower and latent_length - lower <= upper - latent_length else upper
    change = latent_length - target
    start = change // 2 if change >= 0 else -((-change) // 2)
    return start, change - start


@dataclass(frozen=True)
class LatentMMUNetConfig(MMUNetConfig):
    """The MM-UNet on codec latents (model kind `latent`); the state dict is an `MMUNet`'s.

    `codec` and `pixel_size` name the latent shards it was trained on (ROOT/latents/<codec>/<size>);
    `audio_latent_length` is the codec's audio latent length for one window and `audio_crop` how
    much of it `fit_audio` drops at the start and the end (negative: edge-padded) to get
    `audio_size[1]`; `unfit_audio` undoes that before decoding.
    """

    codec: str = ""
    pixel_size: int = 256
    audio_latent_length: int = 0
    audio_crop: tuple[int, int] = (0, 0)
    audio_downsample: int = 1
    audio_dilation_cycle: int = 4  # dilations 1, 2, 4, 8: the receptive field stays within ~50 latents

    @classmethod
    def latent(cls, **overrides) -> "LatentMMUNetConfig":
        """The seed's widths on 32×32 latents: levels at 32, 16, 8, 4 px, attention from 16 px down."""
        return replace(cls(video_size=(16, 4, 32, 32), audio_size=(20, 48), video_out_channels=4,
                           audio_out_channels=20, audio_attention_resolutions=(2, 4, 8)), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "LatentMMUNetConfig":
        """Two levels over 8×8 latents (64 px clips through an 8× VAE), for CPU tests."""
        base = cls(video_size=(16, 4, 8, 8), audio_size=(4, 48), video_out_channels=4, audio_out_channels=4,
                   model_channels=8, channel_mult=(1, 2), num_res_blocks=1, norm_groups=4,
                   cross_attention_resolutions=(1, 2), cross_attention_windows=(1, 4),
                   video_attention_resolutions=(2,), audio_attention_resolutions=(2,), num_heads=2,
                   num_head_channels=8, dropout=0.0)
        return replace(base, **overrides)

    def fitted(self, video_latent: tuple[int, int, int, int], audio_latent: tuple[int, int], *, codec: str,
               pixel_size: int) -> "LatentMMUNetConfig":
        """This config shaped for a codec's window latents: video [F, Cv, h, w], audio [Ca, Ta]. The audio
        crop follows from Ta, the frame count and this config's levels and audio downsampling."""
        frames, cv, h, w = video_latent
        ca, ta = audio_latent
        start, end = audio_crop_for(ta, frames, frames * self.audio_downsample ** (len(self.channel_mult) - 1))
        return replace(self, video_size=(frames, cv, h, w), audio_size=(ca, ta - start - end), video_out_channels=cv,
                       audio_out_channels=ca, codec=codec, pixel_size=pixel_size, audio_latent_length=ta,
                       audio_crop=(start, end))

    def validate(self) -> None:
        super().validate()
        start, end = self.audio_crop
        if self.audio_latent_length and self.audio_latent_length - start - end != self.audio_size[1]:
            raise ModelConfigError(f"audio latent length {self.audio_latent_length} with audio_crop {list(self.audio_crop)} "
                                   f"is {self.audio_latent_length - start - end}, not audio_size {self.audio_size[1]}")
        if (start < 0) != (end < 0) and start and end:
            raise ModelConfigError(f"audio_crop {list(self.audio_crop)} mixes a crop and a pad")

    def fit_audio(self, latent: torch.Tensor) -> torch.Tensor:
        """Codec audio latent [..., Ca, audio_latent_length] → the model's [..., Ca, audio_size[1]]."""
        return _crop_or_pad(latent, *self.audio_crop, self.audio_latent_length or latent.shape[-1])

    def unfit_audio(self, x: torch.Tensor) -> torch.Tensor:
        """The model's audio [..., Ca, audio_size[1]] → the codec's length (padding repeats the edge latent)."""
        start, end = self.audio_crop
        return _crop_or_pad(x, -start, -end, x.shape[-1])


def _crop_or_pad(x: torch.Tensor, start: int, end: int, expected: int) -> torch.Tensor:
    if x.shape[-1] != expected:
        raise ValueError(f"audio latent has length {x.shape[-1]}, expected {expected}")
    if start >= 0 and end >= 0:
        return x[..., start:x.shape[-1] - end]
    left, right = max(-start, 0), max(-end, 0)
    x = x[..., max(start, 0):x.shape[-1] - max(end, 0)]
    parts = [x[..., :1].expand(*x.shape[:-1], left), x, x[..., -1:].expand(*x.shape[:-1], right)]
    return torch.cat(parts, dim=-1)


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
            return MMResBlock(ch, emb_ch, cfg.dropout, out, audio_dilation=2 ** (dil % cfg.audio_dilation_cycle),
                              audio_factor=cfg.audio_downsample,
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
