"""One small interface over a pretrained video VAE and an audio VAE (+ vocoder): `LatentCodec`.

Shapes (B batch, F frames, N audio samples at 16 kHz):

    encode_video(frames [B, F, 3, H, W] in [-1, 1]) -> [B, F, Cv, H/d, W/d]   (per frame, d = 8 for SD)
    decode_video(latent)                          -> frames [B, F, 3, H, W] in [-1, 1]
    encode_audio(wave [B, N])                     -> [B, Ca, Ta]               (1-D: channels × time)
    decode_audio(latent [B, Ca, Ta])              -> wave [B, Ta · hop]        (through the vocoder)

Every encoder returns its posterior MEAN times the family's scale factor, so encoding is deterministic
(recorded as "posterior": "mean"). Audio latent step j covers samples [j·hop, (j+1)·hop), where `hop`
(`audio.samples_per_latent`) is 512 for MMAudio 16 kHz (31.25 Hz) and 640 for AudioLDM 2 (25 Hz); a
waveform whose length is not a multiple of `hop` is zero-padded at the end before encoding, so
Ta = ceil(N / hop). At 10 fps, frame k covers samples [1600k, 1600(k+1)), i.e. audio latents
[k·1600/hop, (k+1)·1600/hop): `latents_per_frame` is 25/8 (MMAudio) or 5/2 (AudioLDM 2), and a window
whose first frame and length are multiples of its denominator (`frame_step`: 8 or 2 frames) starts
and ends exactly on latent boundaries (see `audio_span`).

`CODECS` names the configurations; `load_codec(name, paths)` builds one. Weights: diffusers and
transformers models through `from_pretrained` (a hub id in the user's HF cache, or a local folder),
MMAudio files through avbench/weights.py. A configuration whose weights are missing raises ONE
`CodecWeightsError` with one line per missing part (its name, licence and local-path flag).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import torch

from avbench.errors import WeightsError

POSTERIOR = "mean"


class CodecWeightsError(WeightsError):
    """One or more parts of a latent codec whose weights are missing or unusable (one line per part)."""


class VideoVAE(Protocol):
    """A per-frame image VAE: frames [N, 3, H, W] in [-1, 1] ↔ latents [N, C, H/d, W/d] (scaled)."""

    channels: int
    downsample: int

    def encode(self, frames: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...


class AudioVAE(Protocol):
    """Waveform [B, N] (N a multiple of `samples_per_latent`) ↔ latent [B, C, N / samples_per_latent]."""

    channels: int
    sample_rate: int
    samples_per_latent: int

    def encode(self, wave: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...


def config_hash(config: Any) -> str:
    """sha256 of a model config as sorted JSON (private `_`-keys such as diffusers' version dropped)."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # transformers configs are not dicts
    items = {k: v for k, v in raw.items() if not str(k).startswith("_") and k != "transformers_version"}
    text = json.dumps(items, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class LatentCodec:
    """A video VAE and an audio VAE under one name (see the module docstring for shapes and alignment)."""

    def __init__(self, name: str, video: VideoVAE, audio: AudioVAE, *, frame_batch: int = 16):
        self.name, self.video, self.audio = name, video, audio
        self.frame_batch = frame_batch  # frames per VAE call: bounds memory for long clips

    # ---- rates and alignment ----------------------------------------------------------------------
    @property
    def audio_latent_rate(self) -> Fraction:
        return Fraction(self.audio.sample_rate, self.audio.samples_per_latent)

    def latents_per_frame(self, fps: int = 10) -> Fraction:
        return self.audio_latent_rate / fps

    def frame_step(self, fps: int = 10) -> int:
        """Smallest frame count that spans a whole number of audio latents (8 for MMAudio 16 kHz)."""
        return self.latents_per_frame(fps).denominator

    def audio_latents(self, samples: int) -> int:
        """Ta of a waveform of `samples` samples: ceil(samples / hop)."""
        return -(-samples // self.audio.samples_per_latent)

    def audio_span(self, start: int, frames: int, fps: int = 10) -> tuple[int, int]:
        """Audio latent indices [a0, a1) covering frames [start, start + frames); both must be multiples of
        `frame_step`, otherwise the span would cut a latent in two."""
        step = self.frame_step(fps)
        if start % step or frames % step:
            raise ValueError(f"{self.name}: window start {start} and length {frames} must be multiples of "
                             f"{step} frames to fall on audio latent boundaries")
        lpf = self.latents_per_frame(fps)
        return int(start * lpf), int((start + frames) * lpf)

    # ---- video ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        b, f = frames.shape[:2]
        flat = frames.reshape(b * f, *frames.shape[2:])
        out = torch.cat([self.video.encode(flat[i : i + self.frame_batch])
                         for i in range(0, flat.shape[0], self.frame_batch)])
        return out.reshape(b, f, *out.shape[1:])

    @torch.no_grad()
    def decode_video(self, latent: torch.Tensor) -> torch.Tensor:
        b, f = latent.shape[:2]
        flat = latent.reshape(b * f, *latent.shape[2:])
        out = torch.cat([self.video.decode(flat[i : i + self.frame_batch])
                         for i in range(0, flat.shape[0], self.frame_batch)])
        return out.reshape(b, f, *out.shape[1:])

    # ---- audio ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[-1]
        pad = self.audio_latents(n) * self.audio.samples_per_latent - n
        if pad:
            wave = torch.nn.functional.pad(wave, (0, pad))
        return self.audio.encode(wave)

    @torch.no_grad()
    def decode_audio(self, latent: torch.Tensor) -> torch.Tensor:
        return self.audio.decode(latent)

    # ---- provenance -------------------------------------------------------------------------------
    def describe(self, fps: int = 10) -> dict[str, Any]:
        lpf = self.latents_per_frame(fps)
        return {
            "name": self.name,
            "posterior": POSTERIOR,
            "video": self.video.describe(),
            "audio": self.audio.describe(),
            "video_latent": {"channels": self.video.channels, "downsample": self.video.downsample,
                             "layout": "[F, C, H/d, W/d] per frame"},
            "audio_latent": {"channels": self.audio.channels, "sample_rate": self.audio.sample_rate,
                             "samples_per_latent": self.audio.samples_per_latent,
                             "rate_hz": float(self.audio_latent_rate),
                             "latents_per_frame": f"{lpf.numerator}/{lpf.denominator}",
                             "frame_step": self.frame_step(fps), "fps": fps,
                             "layout": self.audio.describe().get("layout", "[C, T]"),
                             "padding": "waveform zero-padded at the end to a multiple of samples_per_latent"},
        }


# ---- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodecPaths:
    """Where a codec's weights come from; None = the configuration's default (hub id / weights registry)."""

    video_vae: str | None = None  # diffusers AutoencoderKL: hub id or local folder
    audio_vae: str | None = None  # MMAudio: v1-16.pth; AudioLDM 2: hub id or folder with vae/ (and vocoder/)
    vocoder: str | None = None  # MMAudio: best_netG.pt; AudioLDM 2: a SpeechT5HifiGan folder (default: vocoder/)


@dataclass(frozen=True)
class CodecSpec:
    name: str
    video: str  # "module:function" building the VideoVAE from (paths, device, dtype)
    audio: str  # "module:function" building the AudioVAE
    description: str
    test_only: bool = False
    licences: dict[str, str] = field(default_factory=dict)


_PKG = "avbench.models.latent"
CODECS: dict[str, CodecSpec] = {
    "sd-mmaudio16k": CodecSpec(
        "sd-mmaudio16k", f"{_PKG}.sd_video:load_sd_vae", f"{_PKG}.mmaudio16k:load_mmaudio16k",
        "SD per-frame VAE (stabilityai/sd-vae-ft-mse, ×0.18215) + MMAudio 16 kHz VAE (20 ch, 31.25 Hz) + BigVGAN-v1",
        licences={"video": "MIT", "audio": "CC-BY-NC-4.0"}),
    "sd-audioldm2": CodecSpec(
        "sd-audioldm2", f"{_PKG}.sd_video:load_sd_vae", f"{_PKG}.audioldm2:load_audioldm2",
        "SD per-frame VAE + AudioLDM 2 VAE on 64-band 16 kHz log-mel (8×16 latent flattened to 128 ch, 25 Hz) "
        "+ HiFi-GAN (cvssp/audioldm2)",
        licences={"video": "MIT", "audio": "CC-BY-NC-SA-4.0"}),
    "tiny": CodecSpec(
        "tiny", f"{_PKG}.tiny:load_tiny_video", f"{_PKG}.tiny:load_tiny_mmaudio",
        "test only: tiny random SD-style VAE + tiny MMAudio 16 kHz VAE/BigVGAN (seeded, built from configs)",
        test_only=True, licences={"video": "test weights", "audio": "test weights"}),
    "tiny-audioldm2": CodecSpec(
        "tiny-audioldm2", f"{_PKG}.tiny:load_tiny_video", f"{_PKG}.tiny:load_tiny_audioldm2",
        "test only: tiny random SD-style VAE + tiny AudioLDM-style VAE and HiFi-GAN (seeded)",
        test_only=True, licences={"video": "test weights", "audio": "test weights"}),
}


def _builder(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def load_codec(name: str, paths: CodecPaths = CodecPaths(), *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, frame_batch: int = 16) -> LatentCodec:
    """Build codec `name`; every missing part is reported in one `CodecWeightsError` (a line each)."""
    if name not in CODECS:
        raise CodecWeightsError(f"unknown latent codec {name!r}; choose one of {', '.join(CODECS)}")
    spec = CODECS[name]
    parts, problems = {}, []
    for part in ("video", "audio"):
        try:
            parts[part] = _builder(getattr(spec, part))(paths, device=device, dtype=dtype)
        except WeightsError as e:
            problems.extend(line for line in str(e).splitlines() if line.strip())
    if problems:
        raise CodecWeightsError("\n".join(f"{name}: {p}" for p in problems))
    return LatentCodec(name, parts["video"], parts["audio"], frame_batch=frame_batch)
