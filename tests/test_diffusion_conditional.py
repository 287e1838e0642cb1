"""Zero-shot conditional generation by replacement on a joint Gaussian with an exact denoiser.

(v, a) ~ N(0, s²[[1, ρ], [ρ, 1]]): the true conditional E[v | a] = ρ·a. Replacement alone is known to
under-use the condition (MM-Diffusion adds gradient guidance for this reason); guidance moves the
regression slope towards ρ. The known modality must come out exactly as given.
"""

from __future__ import annotations

import math

import pytest
import torch

from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.respace import respaced
from avbench.diffusion.samplers import SAMPLERS
from avbench.diffusion.schedules import DiffusionConfig

S, RHO, B = 0.5, 0.8, 400
TRAIN = DiffusionConfig(steps=1000).schedule_obj()
COV = torch.tensor([[1, RHO], [RHO, 1]], dtype=torch.float64) * S * S


def joint_denoiser(x, t):
    ac = float(TRAIN.alphas_cumprod[int(t[0])])
    xt = torch.cat([x[0], x[1]], dim=1)  # [B, 2]
    gain = math.sqrt(ac) * COV @ torch.linalg.inv(ac * COV + (1 - ac) * torch.eye(2, dtype=torch.float64))
    eps = (xt - math.sqrt(ac) * xt @ gain.T) / math.sqrt(1 - ac)
    return eps[:, :1], eps[:, 1:]


def draws():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(B, 1, generator=g, dtype=torch.float64) * S
    x = tuple(torch.randn(B, 1, generator=g, dtype=torch.float64) for _ in range(2))
    return cond, x, torch.randn(B, 1, generator=g, dtype=torch.float64), g


def slope(generated, cond):
    return float((generated * cond).mean() / (cond * cond).mean())


@pytest.mark.parametrize("name", ["ddim", "dpmpp-2m", "dpmpp-3s", "ddpm"])
def test_replacement_keeps_the_condition_and_guidance_tightens_it(name):
    cond, x, nz, g = draws()
    steps, spacing = (200, "linspace") if name == "ddpm" else (30, "logsnr")
    sched = respaced(TRAIN, steps, spacing)
    kw = {"variance": "fixed_small", "noise": lambda like: tuple(torch.randn(v.shape, generator=g, dtype=v.dtype) for v in like)} if name == "ddpm" else {}
    slopes = {}
    for w in (0.0, 2.0):
        fn = replacement_model_fn(joint_denoiser, TRAIN, known=1, value=cond, noise=nz, guidance_scale=w)
        v, a = SAMPLERS[name](fn, x, sched, **kw)
        torch.testing.assert_close(a, cond, atol=1e-9, rtol=0)
        slopes[w] = slope(v, cond)
    # Replacement informs v, but weakly; guidance brings the slope close to the true ρ = 0.8.
    assert 0.2 < slopes[0.0] < 0.6
    assert abs(slopes[2.0] - RHO) < 0.15 and abs(slopes[2.0] - RHO) < abs(slopes[0.0] - RHO)


def test_video_to_audio_direction_and_shape_errors():
    cond, x, nz, _ = draws()
    fn = replacement_model_fn(joint_denoiser, TRAIN, known=0, value=cond, noise=nz)
    v, a = SAMPLERS["ddim"](fn, x, respaced(TRAIN, 20))
    torch.testing.assert_close(v, cond, atol=1e-9, rtol=0)
    assert slope(a, cond) > 0.2
    bad = replacement_model_fn(joint_denoiser, TRAIN, known=0, value=cond[:3], noise=nz[:3])
    with pytest.raises(ValueError, match="condition has shape"):
        SAMPLERS["ddim"](bad, x, respaced(TRAIN, 2))
