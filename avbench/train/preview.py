"""Previews during training: a few samples from the EMA weights, written as mp4 (H.264 + AAC) under
`RUN/previews/` and to TensorBoard.

- baseline: joint samples from noise with the configured sampler;
- latent: joint samples of latents from noise (x̂0 not clamped: latents are not pixels), decoded by the
  codec the model config names, with its default weights (HF cache / weights registry); when they are
  missing the preview is skipped with a warning in the run log, training goes on;
- superres: the current batch's first clips, downscaled and super-resolved frame by frame; the mp4 shows
  [bilinear upsampling | model output | ground truth] side by side, with the clip's audio.

The sampler is resolved through the same registry as `avbench sample` (`resolve_sampler`: its default
spacing, so a preview and `avbench sample` with the same sampler and step count visit the same
timesteps), and the model is wrapped by the same denoisers (`avbench.diffusion.denoisers`), which carry
the training variance type: DDPM previews of the SR model use its learned variance.

Noise comes from a generator seeded by the step, so a preview never touches the training RNG stream.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from avbench.diffusion.denoisers import joint_denoiser, superres_denoiser
from avbench.diffusion.samplers import SamplerPlan, resolve_sampler
from avbench.diffusion.schedules import Schedule
from avbench.errors import AvbenchError
from avbench.media import to_pcm, to_uint8_frames, write_mp4
from avbench.models.latent.codec import load_codec

FPS = 10
SAMPLE_RATE = 16000
_LABELS = {"sampler": "log.preview_sampler", "steps": "log.preview_sampler_steps"}


def preview_sampler(cfg, train_schedule: Schedule) -> SamplerPlan:
    """The preview's sampler for a `TrainConfig`: `log.preview_sampler` with `log.preview_sampler_steps`
    steps and that sampler's default spacing."""
    return resolve_sampler(cfg.log.preview_sampler, train_schedule, steps=cfg.log.preview_sampler_steps,
                           labels=_LABELS)


def preview_samples(cfg, model, model_cfg, objective, batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(video [n, F, 3, H, W'], audio [n, L]) to write; `model` holds the weights to sample with (EMA)."""
    plan = preview_sampler(cfg, objective.schedule)
    variance = objective.diffusion.variance
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(step)
    n = cfg.log.preview_samples

    def noise(like):
        return tuple(torch.randn(v.shape, generator=g).to(device) for v in like)

    with torch.no_grad():
        if cfg.kind == "mmunet":
            f, c, h, w = model_cfg.video_size
            x = noise((torch.empty(n, f, c, h, w), torch.empty(n, *model_cfg.audio_size)))
            video, audio = plan.run(joint_denoiser(model, variance), x, clip=True, noise=noise)
            return video, audio[:, 0]
        if cfg.kind == "latent":
            codec = load_codec(model_cfg.codec, device=device)
            x = noise((torch.empty(n, *model_cfg.video_size), torch.empty(n, *model_cfg.audio_size)))
            video, audio = plan.run(joint_denoiser(model, variance), x, clip=False, noise=noise)
            frames = codec.decode_video(video).clamp(-1, 1)
            wave = codec.decode_audio(model_cfg.unfit_audio(audio))[:, :model_cfg.video_size[0] * SAMPLE_RATE // FPS]
            return frames, wave
        clips = batch["video"][:n]  # [n, F, 3, H, W]
        nb, f = clips.shape[:2]
        high = clips.flatten(0, 1)
        low = F.interpolate(high, size=(cfg.data.low_res,) * 2, mode="area")
        (sr,) = plan.run(superres_denoiser(model, low, variance), noise((high,)), clip=True, noise=noise)
        bilinear = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
        video = torch.cat([bilinear, sr, high], dim=-1).unflatten(0, (nb, f))
        return video, batch["audio"][:n, 0]


def write_preview(cfg, run: Path, model, model_cfg, ema, objective, batch, step: int, log) -> list[Path]:
    ema_model = copy.deepcopy(model).eval()
    ema.copy_to(ema_model)
    try:
        video, audio = preview_samples(cfg, ema_model, model_cfg, objective, batch, step)
    except AvbenchError as e:
        if cfg.kind != "latent":
            raise
        log.event(step, "warning", message=f"preview skipped: {' '.join(str(e).split())}")
        return []
    out_dir = Path(run) / "previews"
    paths = []
    for i in range(video.shape[0]):
        frames = to_uint8_frames(video[i])  # [F, H, W, 3]
        path = out_dir / f"step-{step:08d}-{i}.mp4"
        write_mp4(path, frames, to_pcm(audio[i]), FPS, SAMPLE_RATE)
        paths.append(path)
        log.video(step, f"preview/{i}", torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255, FPS)
        log.audio(step, f"preview/{i}", torch.from_numpy(to_pcm(audio[i])), SAMPLE_RATE)
    return paths
