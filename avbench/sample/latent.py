"""Sampling a latent MM-UNet (model kind `latent`): the codec between pixel/waveform space and latents.

The joint sampler runs unchanged on latents; this module adds what is specific to them:

- the codec named in the checkpoint's config (`LatentMMUNetConfig.codec`) is built with
  `avbench.models.latent.codec.load_codec` (weights from `--video-vae/--audio-vae/--vocoder` or the
  configuration's defaults; missing ones are one line each, with licence and flag);
- conditions (A→V / V→A by replacement) are encoded first, so replacement works in latent space; the
  audio latent is fitted to the model's length with the crop recorded in the checkpoint;
- samples are decoded to the pixel/waveform layout of the joint pipeline: frames [F, 3, S, S] in [-1, 1]
  (video decoder per frame) and [1, F·1600] at 16 kHz (the crop undone by edge padding, then audio VAE +
  vocoder; the waveform is cut or zero-padded to exactly the clip's samples).

x̂0 is never clamped to [-1, 1] here: it is a latent, not pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avbench.errors import SampleError
from avbench.models.latent.codec import CodecPaths, LatentCodec, load_codec
from avbench.models.mmunet import LatentMMUNetConfig

AUDIO = 1  # index of the audio element in (video, audio)


def codec_paths(video_vae: Path | str | None, audio_vae: Path | str | None, vocoder: Path | str | None) -> CodecPaths:
    return CodecPaths(*(None if p is None else str(p) for p in (video_vae, audio_vae, vocoder)))


@dataclass
class LatentSampling:
    """A latent model's codec and the layout that maps its latents to a clip."""

    codec: LatentCodec
    model_cfg: LatentMMUNetConfig
    fps: int = 10
    sample_rate: int = 16000

    @property
    def frames(self) -> int:
        return self.model_cfg.video_size[0]

    @property
    def pixel_size(self) -> int:
        return self.model_cfg.pixel_size

    @property
    def samples(self) -> int:
        """Waveform samples of one clip: frames at `fps`, `sample_rate` Hz (25600 for 16 frames)."""
        return self.frames * self.sample_rate // self.fps

    def encode_condition(self, values: torch.Tensor, known: int) -> torch.Tensor:
        """Pixel-space conditions → the model's latents: audio [B, 1, N] → [B, Ca, L]; video
        [B, F, 3, S, S] → [B, F, Cv, h, w]."""
        device = values.device
        if known == AUDIO:
            latent = self.codec.encode_audio(values[:, 0].float())
            return self.model_cfg.fit_audio(latent).to(device)
        return self.codec.encode_video(values.float()).to(device)

    def decode(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (video [B, F, Cv, h, w], audio [B, Ca, L]) → frames [B, F, 3, S, S] in [-1, 1] and
        waveforms [B, 1, N] (exactly `samples` long)."""
        frames = self.codec.decode_video(video.float()).clamp(-1, 1)
        wave = self.codec.decode_audio(self.model_cfg.unfit_audio(audio.float()))
        n = self.samples
        wave = wave[..., :n] if wave.shape[-1] >= n else torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))
        return frames, wave.reshape(wave.shape[0], 1, n)

    def describe(self) -> dict[str, Any]:
        """What samples.json records: the codec (ids, checksums, rates) and the audio latent layout."""
        mc = self.model_cfg
        return {"codec": self.codec.describe(self.fps),
                "video_latent": list(mc.video_size),
                "audio_latent": {"codec_length": mc.audio_latent_length, "model_length": mc.audio_size[1],
                                 "channels": mc.audio_size[0], "crop": list(mc.audio_crop),
                                 "undo": "edge latents repeated before decoding" if any(c > 0 for c in mc.audio_crop)
                                 else "padding removed before decoding"},
                "clip": "off: x0 is a latent, not pixels in [-1, 1]"}


def plan_latent(model_cfg: LatentMMUNetConfig, paths: CodecPaths, *, device: str | torch.device = "cpu",
                fps: int = 10, sample_rate: int = 16000, where: str = "") -> LatentSampling:
    """The codec of a latent checkpoint, checked against the latent shapes the model was trained on."""
    if not model_cfg.codec:
        raise SampleError(f"{where}: this latent checkpoint names no codec (config.codec is empty); "
                          "retrain it with `avbench train latent`")
    codec = load_codec(model_cfg.codec, paths, device=device)
    frames, cv, h, w = model_cfg.video_size
    d = codec.video.downsample
    if cv != codec.video.channels or h * d != model_cfg.pixel_size or w * d != model_cfg.pixel_size:
        raise SampleError(f"{where}: the model makes {cv}x{h}x{w} video latents but codec {model_cfg.codec} has "
                          f"{codec.video.channels} channels at 1/{d} of {model_cfg.pixel_size} px; pass the "
                          "codec's weights it was trained with")
    ta = codec.audio_latents(frames * sample_rate // fps)
    if model_cfg.audio_size[0] != codec.audio.channels or (model_cfg.audio_latent_length
                                                           and ta != model_cfg.audio_latent_length):
        raise SampleError(f"{where}: the model's audio latent is {model_cfg.audio_size[0]}x"
                          f"{model_cfg.audio_latent_length} but codec {model_cfg.codec} makes "
                          f"{codec.audio.channels}x{ta} for {frames} frames; pass the codec it was trained with")
    return LatentSampling(codec, model_cfg, fps, sample_rate)
