"""MMAudio's 1-D mel VAE (`v1-16.pth`: 16 kHz, 80 mel bins → 20 channels; `v1-44.pth`: 44.1 kHz,
128 bins → 40 channels), state-dict compatible with the released files.

Layout: everything here is channels-first, mel [B, n_mels, T_mel] and latent [B, C, T_lat] with
T_lat = T_mel // 2 (one 2x downsampling). MMAudio's flow network works on [B, T_lat, C] (it
transposes before decoding); its latent mean/std normalisation belongs to that network's checkpoint,
not to this VAE. What this VAE normalises is the mel input: per-bin data statistics (`data_mean`,
`data_std`, shape [1, n_mels, 1]) that the released files carry, applied before encoding and undone
after decoding.

The released files hold the encoder too (the original loads them strictly before optionally deleting
it); `load_audio_vae(..., with_encoder=False)` drops it after loading for decode-only use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from avbench.errors import ModelConfigError
from avbench.models.mmaudio.vae_blocks import AttnBlock1D, Downsample1D, MPConv1D, ResnetBlock1D, Upsample1D, mp_silu
from avbench.models.state_dict import clean_state_dict, load_strict, safe_load

__all__ = ["AUDIO_VAES", "AudioPosterior", "AudioVAE", "AudioVAEConfig", "load_audio_vae"]

_CLIP = 256.0  # activations are clamped to ±this after every block, as in training


@dataclass(frozen=True)
class AudioVAEConfig:
    mel_bins: int
    latent_channels: int
    hidden: int
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    # Encoder levels followed by a 2x time downsampling. The released models have self-attention only
    # in the middle (their per-level attention list names a level that does not exist).
    down_levels: tuple[int, ...] = (0,)
    kernel_size: int = 3

    @property
    def time_downsampling(self) -> int:
        return 2 ** len(self.down_levels)


AUDIO_VAES: dict[str, AudioVAEConfig] = {
    "16k": AudioVAEConfig(mel_bins=80, latent_channels=20, hidden=384),
    "44k": AudioVAEConfig(mel_bins=128, latent_channels=40, hidden=512),
    "tiny": AudioVAEConfig(mel_bins=80, latent_channels=4, hidden=8),  # tests only
    # tests only: v1-44's 128 mel bins at toy width; 8 latent channels so a tiny-16k file cannot pass for it
    "tiny44": AudioVAEConfig(mel_bins=128, latent_channels=8, hidden=8),
}


class AudioPosterior(NamedTuple):
    """Diagonal Gaussian over the latent [B, C, T]; unpacks as `mean, logvar = vae.encode(mel)`."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.empty_like(self.mean).normal_(generator=generator)
        return self.mean + self.std * noise


def _level(blocks: list[nn.Module]) -> nn.Module:
    # Plain container so the state-dict keys read `<level>.block.<i>`, `<level>.downsample`, ...
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    return level


class _Middle(nn.Module):
    def __init__(self, ch: int, kernel_size: int):
        super().__init__()
        self.block_1 = ResnetBlock1D(ch, ch, kernel_size)
        self.attn_1 = AttnBlock1D(ch)
        self.block_2 = ResnetBlock1D(ch, ch, kernel_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h))).clamp(-_CLIP, _CLIP)


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for block in level.block:
        h = block(h).clamp(-_CLIP, _CLIP)
    return h


class Encoder1D(nn.Module):
    def __init__(self, cfg: AudioVAEConfig):
        super().__init__()
        k = cfg.kernel_size
        self.conv_in = MPConv1D(cfg.mel_bins, cfg.hidden, k)
        self.down = nn.ModuleList()
        ch = cfg.hidden
        for i, mult in enumerate(cfg.ch_mult):
            out = cfg.hidden * mult
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock1D(ch, out, k))
                ch = out
            level = _level(blocks)
            if i in cfg.down_levels:
                level.downsample = Downsample1D(ch)
            self.down.append(level)
        self.mid = _Middle(ch, k)
        self.conv_out = MPConv1D(ch, 2 * cfg.latent_channels, k)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class Decoder1D(nn.Module):
    def __init__(self, cfg: AudioVAEConfig):
        super().__init__()
        k = cfg.kernel_size
        ch = cfg.hidden * cfg.ch_mult[-1]
        self.conv_in = MPConv1D(cfg.latent_channels, ch, k)
        self.mid = _Middle(ch, k)
        # The decoder upsamples at the level above each encoder downsampling; `up` is indexed by level
        # (0 = finest) but run coarsest first.
        up_levels = {i + 1 for i in cfg.down_levels}
        levels: list[nn.Module] = []
        for i in reversed(range(len(cfg.ch_mult))):
            out = cfg.hidden * cfg.ch_mult[i]
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock1D(ch, out, k))
                ch = out
            level = _level(blocks)
            if i in up_levels:
                level.upsample = Upsample1D(ch)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.conv_out = MPConv1D(ch, cfg.mel_bins, k)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class AudioVAE(nn.Module):
    """mel [B, n_mels, T] ⇄ latent [B, C, T // 2] (channels first; see the module docstring)."""

    def __init__(self, cfg: AudioVAEConfig | str):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in AUDIO_VAES:
                raise ModelConfigError(f"unknown audio VAE {cfg!r}; known: {', '.join(AUDIO_VAES)}")
            cfg = AUDIO_VAES[cfg]
        if any(not 0 <= i < len(cfg.ch_mult) - 1 for i in cfg.down_levels):
            # The decoder upsamples one level above each downsampling: the last level cannot downsample.
            raise ModelConfigError(f"audio VAE down_levels {cfg.down_levels} must lie in 0..{len(cfg.ch_mult) - 2}")
        self.cfg = cfg
        # Placeholders: the released files carry the real per-bin statistics.
        self.register_buffer("data_mean", torch.zeros(1, cfg.mel_bins, 1))
        self.register_buffer("data_std", torch.ones(1, cfg.mel_bins, 1))
        self.encoder: Encoder1D | None = Encoder1D(cfg)
        self.decoder = Decoder1D(cfg)

    def drop_encoder(self) -> AudioVAE:
        self.encoder = None
        return self

    def encode(self, mel: torch.Tensor) -> AudioPosterior:
        if self.encoder is None:
            raise RuntimeError("this AudioVAE was loaded without its encoder (with_encoder=False)")
        moments = self.encoder((mel - self.data_mean) / self.data_std)
        mean, logvar = moments.chunk(2, dim=1)
        return AudioPosterior(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent) * self.data_std + self.data_mean


def load_audio_vae(mode: str, path: str | Path, *, with_encoder: bool = True,
                   map_location: str | torch.device = "cpu") -> AudioVAE:
    """Build the `mode` VAE ("16k" → v1-16.pth, "44k" → v1-44.pth) and load `path` strictly, in eval."""
    sd = clean_state_dict(safe_load(path, map_location=map_location))
    with torch.device("meta"):
        vae = AudioVAE(mode)
    if not with_encoder:
        vae.drop_encoder()
        sd = {k: v for k, v in sd.items() if not k.startswith("encoder.")}
    # float32, like the original's copy of the file into an fp32 model
    load_strict(vae, sd, path, f"an MMAudio {mode} audio VAE state dict", "pass the right file for this mode",
                dtype=torch.float32)
    return vae.eval().requires_grad_(False)
