"""MMAudio's 16 kHz audio codec (the port in avbench/models/mmaudio/): log10-mel → 1-D VAE → BigVGAN-v1.

Rates: mel hop 256 samples (62.5 Hz), the VAE halves time → one latent per 512 samples = 31.25 Hz,
20 channels, laid out [C, T] (MMAudio's own network transposes to [T, C]; not done here). Latent =
posterior mean, unscaled (scale 1.0: MMAudio normalises latents inside its flow network with that
checkpoint's statistics, not in the VAE). Decoding: VAE → mel [B, 80, 2T] → BigVGAN → 512·T samples.

Weights: `v1-16.pth` (registry `mmaudio-vae-16k`) and `best_netG.pt` (`mmaudio-bigvgan-16k`), found by
avbench/weights.py (flag, environment variable, cache) and checked against the md5 MMAudio publishes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from avbench import weights
from avbench.errors import WeightsError
from avbench.models.latent.codec import CodecPaths, config_hash

VAE_WEIGHTS, VOCODER_WEIGHTS = "mmaudio-vae-16k", "mmaudio-bigvgan-16k"
_FLAGS = {VAE_WEIGHTS: "--audio-vae", VOCODER_WEIGHTS: "--vocoder"}
_WHAT = {VAE_WEIGHTS: "audio VAE (MMAudio 16 kHz)", VOCODER_WEIGHTS: "vocoder (MMAudio BigVGAN-v1 16 kHz)"}


class MMAudioAudio:
    """MMAudio mel VAE + BigVGAN as an `AudioVAE` ([B, N] ↔ [B, C, N / 512])."""

    def __init__(self, vae, vocoder, mel, provenance: dict[str, Any], *, mode: str = "16k"):
        self.vae, self.vocoder, self.mel = vae.eval(), vocoder.eval(), mel
        self.mode = mode
        self.channels = int(vae.cfg.latent_channels)
        self.sample_rate = int(mel.cfg.sample_rate)
        self.samples_per_latent = int(mel.cfg.hop) * int(vae.cfg.time_downsampling)
        if vocoder.cfg.hop != mel.cfg.hop:
            raise WeightsError(f"MMAudio {mode}: vocoder hop {vocoder.cfg.hop} differs from the mel hop {mel.cfg.hop}")
        self.provenance = provenance
        p = next(vae.parameters())
        self.device, self.dtype = p.device, p.dtype

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.mel(wave.to(self.device, torch.float32)).to(self.dtype)
        return self.vae.encode(mel).mean.float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        mel = self.vae.decode(latent.to(self.device, self.dtype))
        wave = self.vocoder(mel.to(next(self.vocoder.parameters()).dtype))[:, 0].float()
        n = latent.shape[-1] * self.samples_per_latent
        return torch.nn.functional.pad(wave, (0, max(0, n - wave.shape[-1])))[..., :n]

    def describe(self) -> dict[str, Any]:
        mel = self.mel.cfg
        return {"family": f"mmaudio-{self.mode}", **self.provenance, "scaling_factor": 1.0,
                "latent_channels": self.channels, "samples_per_latent": self.samples_per_latent,
                "mel": {"sample_rate": mel.sample_rate, "n_fft": mel.n_fft, "hop": mel.hop, "win": mel.win,
                        "n_mels": mel.n_mels, "fmin": mel.fmin, "fmax": mel.fmax, "log": mel.log},
                "layout": "[C, T] (MMAudio's network uses [T, C])", "posterior": "mean"}


def build_mmaudio_audio(vae_path: str | Path, vocoder_path: str | Path, *, mode: str, provenance: dict[str, Any],
                        device="cpu", dtype=torch.float32) -> MMAudioAudio:
    from avbench.models.mmaudio.bigvgan import load_vocoder
    from avbench.models.mmaudio.mel import MelConverter
    from avbench.models.mmaudio.vae import load_audio_vae

    vae = load_audio_vae(mode, vae_path).to(device=device, dtype=dtype)
    vocoder = load_vocoder(mode, vocoder_path).to(device=device, dtype=dtype)
    mel = MelConverter("16k").to(device)
    prov = {**provenance, "vae_config_hash": config_hash(vars(vae.cfg)),
            "vocoder_config_hash": config_hash(vars(vocoder.cfg))}
    return MMAudioAudio(vae, vocoder, mel, prov, mode=mode)


def _missing_line(name: str) -> str | None:
    """Our own line for a file nobody pointed at and the cache lacks (the registry's names v2a's flags)."""
    spec = weights.REGISTRY[name]
    if os.environ.get(spec.env) or weights.cached_path(name).is_file():
        return None
    return (f"{_WHAT[name]}: {spec.filename} not found in the avbench cache ({weights.cached_path(name)}); licence "
            f"{spec.licence}; source {spec.url}; {spec.fetch_hint}, or pass a local copy with {_FLAGS[name]} PATH "
            f"(or ${spec.env})")


def _resolve(name: str, path: str | None) -> tuple[Path, str]:
    if path is None and (line := _missing_line(name)):
        raise WeightsError(line)
    try:
        return weights.resolve(name, path)
    except WeightsError as e:
        spec = weights.REGISTRY[name]
        raise WeightsError(f"{_WHAT[name]} ({spec.licence}): {' '.join(str(e).split())}") from None


def load_mmaudio16k(paths: CodecPaths, *, device="cpu", dtype=torch.float32) -> MMAudioAudio:
    found, problems = {}, []
    for name, path in ((VAE_WEIGHTS, paths.audio_vae), (VOCODER_WEIGHTS, paths.vocoder)):
        try:
            found[name] = _resolve(name, path)
        except WeightsError as e:
            problems.append(str(e))
    if problems:
        raise WeightsError("\n".join(problems))
    (vae_path, vae_sha), (voc_path, voc_sha) = found[VAE_WEIGHTS], found[VOCODER_WEIGHTS]
    prov = {"vae": {"id": weights.REGISTRY[VAE_WEIGHTS].filename, "sha256": vae_sha,
                    "licence": weights.REGISTRY[VAE_WEIGHTS].licence},
            "vocoder": {"id": weights.REGISTRY[VOCODER_WEIGHTS].filename, "sha256": voc_sha,
                        "licence": weights.REGISTRY[VOCODER_WEIGHTS].licence}}
    return build_mmaudio_audio(vae_path, voc_path, mode="16k", provenance=prov, device=device, dtype=dtype)
