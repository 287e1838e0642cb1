"""Stable Diffusion's image VAE applied per frame (diffusers `AutoencoderKL`, `stabilityai/sd-vae-ft-mse`).

Latent = posterior mean × `scaling_factor` (0.18215 for SD 1.x; read from the model's config, as is
`shift_factor` when a VAE has one), so encoding is deterministic. 8× spatial downsampling, 4 channels.
"""

from __future__ import annotations

from typing import Any

import torch

from avbench.models.latent.codec import CodecPaths
from avbench.models.latent.pretrained import from_pretrained

SD_VAE_ID = "stabilityai/sd-vae-ft-mse"
SD_VAE_LICENCE = "MIT, per its model card"


class DiffusersImageVAE:
    """A diffusers AutoencoderKL as a `VideoVAE` (frames [N, 3, H, W] in [-1, 1])."""

    def __init__(self, vae, provenance: dict[str, Any], *, family: str = "sd-vae"):
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.scale = float(cfg.scaling_factor)
        self.shift = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.provenance = {"family": family, **provenance}
        p = next(vae.parameters())
        self.device, self.dtype = p.device, p.dtype

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(self.device, self.dtype)
        mean = self.vae.encode(x).latent_dist.mean
        return ((mean - self.shift) * self.scale).float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        z = latent.to(self.device, self.dtype) / self.scale + self.shift
        return self.vae.decode(z).sample.float().clamp(-1.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {**self.provenance, "scaling_factor": self.scale, "shift_factor": self.shift,
                "latent_channels": self.channels, "downsample": self.downsample, "posterior": "mean"}


def to_device(model, device, dtype):
    """`.to(device)`, and a dtype change only when asked (diffusers warns on every cast)."""
    model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype=dtype)


def load_sd_vae(paths: CodecPaths, *, device="cpu", dtype=torch.float32) -> DiffusersImageVAE:
    from diffusers import AutoencoderKL

    source = paths.video_vae or SD_VAE_ID
    vae, prov = from_pretrained(AutoencoderKL.from_pretrained, source, subfolder=None,
                                what="video VAE", licence=SD_VAE_LICENCE, flag="--video-vae")
    return DiffusersImageVAE(to_device(vae, device, dtype), prov)
