"""Waveform ⇄ MMAudio latent: mel front end + audio VAE + vocoder behind one small object.

Frame rates (checked by tests/test_models_mmaudio_codec.py):
- 16 kHz mode: mel hop 256 → 62.5 mel frames/s; the VAE halves time → 31.25 latents/s, i.e. one
  latent frame per 512 samples (32 ms), 20 channels. A 1.6 s clip (25,600 samples) is 100 mel frames
  and 50 latent frames, so a 10 fps video frame spans 3.125 latent frames: frame boundaries meet
  latent boundaries only every 8 video frames (0.8 s = 25 latents).
- 44.1 kHz mode: hop 512 → ~86.13 mel frames/s → ~43.07 latents/s (1,024 samples each), 40 channels.

Latents are [B, C, T] (channels first, what avbench's 1-D audio branch and this VAE use); MMAudio's
flow network wants [B, T, C] and applies its own latent mean/std on top.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avbench.models.mmaudio.bigvgan import BigVGAN, load_vocoder
from avbench.models.mmaudio.mel import MEL_CONFIGS, MelConverter
from avbench.models.mmaudio.vae import AudioVAE, load_audio_vae

__all__ = ["MMAudioAudioCodec", "load_audio_codec", "random_audio_codec"]


class MMAudioAudioCodec(nn.Module):
    """encode(wave [B, N]) → latent [B, C, N // samples_per_latent]; decode(latent) → wave [B, N']."""

    def __init__(self, vae: AudioVAE, vocoder: nn.Module, mel: MelConverter):
        super().__init__()
        if vae.cfg.mel_bins != mel.cfg.n_mels:
            raise ValueError(f"VAE expects {vae.cfg.mel_bins} mel bins, the mel converter makes {mel.cfg.n_mels}")
        self.vae = vae
        self.vocoder = vocoder
        self.mel = mel

    @property
    def sample_rate(self) -> int:
        return self.mel.cfg.sample_rate

    @property
    def latent_channels(self) -> int:
        return self.vae.cfg.latent_channels

    @property
    def samples_per_latent(self) -> int:
        return self.mel.cfg.hop * self.vae.cfg.time_downsampling

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (31.25 in the 16 kHz mode)."""
        return self.sample_rate / self.samples_per_latent

    def num_latents(self, num_samples: int) -> int:
        return self.mel.num_frames(num_samples) // self.vae.cfg.time_downsampling

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Posterior mean (deterministic). Trailing samples short of a whole latent frame are dropped."""
        return self.vae.encode(self.mel(wave)).mean

    @torch.no_grad()
    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.vocoder(mel)
        wave = out if isinstance(out, torch.Tensor) else out.sample  # diffusers returns DecoderOutput
        return wave[:, 0].clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, C, T] → wave [B, T · samples_per_latent] in [-1, 1]."""
        return self.vocode(self.decode_mel(latent))


def load_audio_codec(mode: str, vae_path: str | Path, vocoder_path: str | Path, *,
                     with_encoder: bool = True, map_location: str | torch.device = "cpu") -> MMAudioAudioCodec:
    """The released codec of `mode` ("16k": v1-16.pth + best_netG.pt; "44k": v1-44.pth + BigVGAN-v2)."""
    return MMAudioAudioCodec(load_audio_vae(mode, vae_path, with_encoder=with_encoder, map_location=map_location),
                             load_vocoder(mode, vocoder_path, map_location=map_location),
                             MelConverter(MEL_CONFIGS[mode]))


def random_audio_codec(seed: int = 0, vae: str = "tiny", vocoder: str = "tiny",
                       mel: str = "16k") -> MMAudioAudioCodec:
    """A randomly initialised codec for tests (defaults: tiny VAE and BigVGAN on the 16 kHz mel)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MMAudioAudioCodec(AudioVAE(vae), BigVGAN(vocoder).remove_weight_norm(), MelConverter(mel))
    return model.eval().requires_grad_(False)
