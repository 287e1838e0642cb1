"""Previews during training: a few samples from the EMA weights, written as mp4 (H.264 + AAC) under
`RUN/previews/` and to TensorBoard.

- baseline: joint samples from noise with the configured sampler (`avbench.diffusion.samplers`);
- superres: the current batch's first clips, downscaled and super-resolved frame by frame; the mp4 shows
  [bilinear upsampling | model output | ground truth] side by side, with the clip's audio.

The mp4 writer is the sample pipeline's (`avbench.sample.media`), so previews decode like `avbench sample`
outputs.

Noise comes from a generator seeded by the step, so a preview never touches the training RNG stream.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

FPS = 10
SAMPLE_RATE = 16000


def write_preview(cfg, run: Path, model, model_cfg, ema, objective, batch, step: int, log) -> list[Path]:
    from avbench.diffusion.respace import respaced
    from avbench.diffusion.samplers import SAMPLERS, Prediction

    if cfg.log.preview_sampler not in SAMPLERS:
        raise ValueError(f"log.preview_sampler = {cfg.log.preview_sampler!r}; choose one of {', '.join(SAMPLERS)}")
    sampler = SAMPLERS[cfg.log.preview_sampler]
    device = next(model.parameters()).device
    ema_model = copy.deepcopy(model).eval()
    ema.copy_to(ema_model)
    schedule = respaced(objective.schedule, cfg.log.preview_sampler_steps)
    g = torch.Generator(device="cpu").manual_seed(step)
    n = cfg.log.preview_samples
    out_dir = Path(run) / "previews"

    def noise(like):
        return tuple(torch.randn(v.shape, generator=g).to(device) for v in like)

    kwargs = {"noise": noise} if cfg.log.preview_sampler == "ddpm" else {}
    with torch.no_grad():
        if cfg.kind == "baseline":
            f, c, h, w = model_cfg.video_size
            x = noise((torch.empty(n, f, c, h, w), torch.empty(n, *model_cfg.audio_size)))
            video, audio = sampler(lambda xt, t: ema_model(xt[0], xt[1], t), x, schedule, clip=True, **kwargs)
            audio = audio[:, 0]
        else:
            clips = batch["video"][:n]  # [n, F, 3, H, W]
            nb, f = clips.shape[:2]
            high = clips.flatten(0, 1)
            low = F.interpolate(high, size=(cfg.data.low_res,) * 2, mode="area")

            def model_fn(xt, t):
                out = ema_model(xt[0], t, low_res=low)
                return Prediction((out[:, :3],), (out[:, 3:],))

            (sr,) = sampler(model_fn, noise((high,)), schedule, clip=True, **kwargs)
            bilinear = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
            video = torch.cat([bilinear, sr, high], dim=-1).unflatten(0, (nb, f))
            audio = batch["audio"][:n, 0]
    from avbench.sample.media import to_pcm, to_uint8_frames, write_mp4

    paths = []
    for i in range(video.shape[0]):
        frames = to_uint8_frames(video[i])  # [F, H, W, 3]
        path = out_dir / f"step-{step:08d}-{i}.mp4"
        write_mp4(path, frames, to_pcm(audio[i]), FPS, SAMPLE_RATE)
        paths.append(path)
        log.video(step, f"preview/{i}", torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255, FPS)
        log.audio(step, f"preview/{i}", torch.from_numpy(to_pcm(audio[i])), SAMPLE_RATE)
    return paths
