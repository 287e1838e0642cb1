"""Training previews sample like `avbench sample`: the same timesteps for a sampler name, and DDPM previews
of the learned-variance SR model use that variance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avbench.diffusion.denoisers import superres_denoiser
from avbench.diffusion.respace import respaced
from avbench.diffusion.samplers import SAMPLERS, sample_ddpm
from avbench.diffusion.schedules import DiffusionConfig
from avbench.sample.pipeline import SampleConfig, base_sampler_plan
from avbench.train.config import DataSection, DiffusionSection, LogSection, ModelSection, TrainConfig
from avbench.train.objectives import build_model, make_objective
from avbench.train.preview import preview_sampler, preview_samples

TRAIN = DiffusionConfig(steps=1000).schedule_obj()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [4, 25])
def test_preview_and_sample_visit_the_same_timesteps(name, steps):
    train_cfg = TrainConfig(log=LogSection(preview_sampler=name, preview_sampler_steps=steps))
    sample_cfg = SampleConfig(checkpoint=Path("unused.pt"), out=Path("unused"), sampler=name, steps=steps)
    preview = preview_sampler(train_cfg, TRAIN)
    sample = base_sampler_plan(sample_cfg, TRAIN)
    assert preview.timesteps == sample.timesteps and preview.spacing == sample.spacing == SAMPLERS[name].spacing
    if SAMPLERS[name].spacing == "logsnr":
        # What the preview used before the registry: time-uniform steps, not what `sample` visits.
        assert preview.timesteps != respaced(TRAIN, steps, "linspace").timesteps


def superres_setup(sampler: str):
    torch.manual_seed(0)
    cfg = TrainConfig(kind="superres", model=ModelSection(preset="tiny"),
                      data=DataSection(size=64, low_res=32, frames=2),
                      diffusion=DiffusionSection(steps=100),
                      log=LogSection(preview_sampler=sampler, preview_sampler_steps=4, preview_samples=1))
    model, model_cfg = build_model(cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised output layers would make ε and σ constant
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.eval()
    objective = make_objective(cfg, model_cfg, torch.device("cpu"))
    batch = {"video": torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1, "audio": torch.zeros(1, 1, 3200)}
    return cfg, model, model_cfg, objective, batch


def test_ddpm_superres_preview_uses_the_learned_variance():
    cfg, model, model_cfg, objective, batch = superres_setup("ddpm")
    assert objective.diffusion.variance == "learned_range"
    step = 3
    video, _ = preview_samples(cfg, model, model_cfg, objective, batch, step)
    got = video[0, :, :, :, 64:128]  # [bilinear | model output | ground truth]

    high = batch["video"][0]
    low = torch.nn.functional.interpolate(high, size=(32, 32), mode="area")

    def by_hand(variance):
        g = torch.Generator().manual_seed(step)  # the preview's own stream: start noise, then step noise
        noise = lambda like: tuple(torch.randn(v.shape, generator=g) for v in like)
        sched = respaced(objective.schedule, 4, "linspace")
        return sample_ddpm(superres_denoiser(model, low, "learned_range"), noise((high,)), sched,
                           variance=variance, clip=True, noise=noise)[0]

    learned, fixed = by_hand("learned_range"), by_hand("fixed_large")
    assert float((learned - fixed).abs().mean()) > 1e-3  # the two variances give different previews
    torch.testing.assert_close(got, learned, rtol=0, atol=1e-6)
