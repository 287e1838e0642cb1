"""The seed's own sampler (`dpm-solver-3s`, MM-Diffusion's noise-prediction DPM-Solver) and the precision
and loss settings that make avbench compute what the original code computes.

Parity with the original samplers on a seeded model is in test_sample_seed_preset.py; here: the grid and
call pattern (against the integers the original called its model with, recorded in the fixture), accuracy
on the Gaussian toy problem, and the q_sample / VB-rescaling fixes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.diffusion import toy
from avbench.diffusion.gaussian import q_sample, training_loss, vb_term
from avbench.diffusion.respace import dpm_logsnr, respaced
from avbench.diffusion.samplers import SAMPLERS, dpm_solver_orders, resolve_sampler, sample_dpm_solver_3s
from avbench.diffusion.schedules import DiffusionConfig, Schedule
from avbench.train.config import load_config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mmdiffusion_samplers" / "mmdiffusion_samplers.npz"
TRAIN = DiffusionConfig(steps=1000).schedule_obj()
MU, S = 0.3, 0.5
X = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]


def flow(x: torch.Tensor, a_start: float, a_end: float) -> torch.Tensor:
    """The toy's exact probability-flow map from ᾱ = a_start to ᾱ = a_end (no final denoising)."""
    z = (x - math.sqrt(a_start) * MU) / math.sqrt(a_start * S**2 + 1 - a_start)
    return math.sqrt(a_end) * MU + z * math.sqrt(a_end * S**2 + 1 - a_end)


def test_registry_entry_and_the_original_call_timesteps():
    spec = SAMPLERS["dpm-solver-3s"]
    assert (spec.default_steps, spec.spacing, spec.options, spec.stochastic) == (20, "dpm-logsnr", frozenset(), False)
    plan = resolve_sampler("dpm-solver-3s", TRAIN)
    # What MM-Diffusion's DPM_Solver passed to its model, noisiest first (recorded by the fixture run).
    original = np.load(FIXTURE)["base_timesteps"].tolist()
    assert original == [999, 949, 898, 843, 784, 721, 652, 576, 492, 399, 302, 211, 138, 85, 51, 30, 16, 8, 3, 1]
    assert plan.timesteps[::-1] == original and plan.steps == 20
    # It stops at t = 0 (ᾱ_0), not at clean data.
    assert plan.schedule.final_alpha_cumprod == pytest.approx(float(TRAIN.alphas_cumprod[0]), rel=1e-12)


def test_orders_follow_dpm_solver_fast():
    assert dpm_solver_orders(20) == [3] * 6 + [2]
    assert dpm_solver_orders(19) == [3] * 6 + [1]
    assert dpm_solver_orders(21) == [3] * 6 + [2, 1]
    for n in range(1, 40):
        assert sum(dpm_solver_orders(n)) == n


def test_seed_grid_makes_steps_calls_none_at_t0_and_returns_x_at_t0():
    calls: list[int] = []
    sched = dpm_logsnr(TRAIN, 20)
    out = sample_dpm_solver_3s(toy.gaussian_denoiser(TRAIN, MU, S, calls), (X,), sched)[0]
    assert len(calls) == 20 and 0 not in calls and calls == sched.timesteps[::-1]
    target = flow(X, float(TRAIN.alphas_cumprod[-1]), float(TRAIN.alphas_cumprod[0]))
    # The floor(t) calls see a slightly less noisy ᾱ than the solver assumes: a few 1e-3 that more steps
    # do not remove (docs/sampling.md).
    assert float((out - target).abs().max()) < 0.015
    # Data = one point: x̂0 is that point at every step, x at t = 0 is σ_0 = 0.01 per unit of noise off it.
    point = sample_dpm_solver_3s(toy.gaussian_denoiser(TRAIN, 0.7, 0.0), (X,), sched)[0]
    at_t0 = math.sqrt(float(TRAIN.alphas_cumprod[0])) * 0.7 + math.sqrt(1 - float(TRAIN.alphas_cumprod[0])) * X
    torch.testing.assert_close(point, at_t0, atol=2e-4, rtol=0)
    assert float((point - 0.7).abs().max()) > 0.02


def test_third_order_convergence_on_a_grid_of_training_timesteps():
    # With the grid's points on training timesteps the model sees exactly the noise level the solver
    # assumes, so the error is the solver's own: third order in the step.
    def grid(n: int) -> Schedule:
        full = respaced(TRAIN, n + 1, "logsnr")  # index 0 is t = 0, the end point
        ac = full.alphas_cumprod[1:]
        betas = 1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        return Schedule(betas, full.timesteps[1:], 1000, final_alpha_cumprod=float(full.alphas_cumprod[0]))

    target = flow(X, float(TRAIN.alphas_cumprod[-1]), float(TRAIN.alphas_cumprod[0]))
    errs = [float((sample_dpm_solver_3s(toy.gaussian_denoiser(TRAIN, MU, S), (X,), grid(n))[0] - target).abs().max())
            for n in (20, 41, 80)]
    assert errs[0] < 2e-2 and errs[2] < 1e-3
    assert errs[1] < errs[0] / 3 and errs[2] < errs[1] / 3


def test_on_other_grids_it_denoises_with_its_last_call():
    # Any registry spacing works: N calls, the last one at the cleanest timestep giving x̂0.
    calls: list[int] = []
    sched = respaced(TRAIN, 50, "logsnr")
    out = sample_dpm_solver_3s(toy.gaussian_denoiser(TRAIN, MU, S, calls), (X,), sched)[0]
    assert len(calls) == 50 and calls[-1] == 0
    assert float((out - toy.exact_sample(X, sched, MU, S)).abs().max()) < 1e-3


def test_noise_and_data_prediction_solvers_differ():
    # The reason the seed's solver is its own entry: the same grid gives different samples.
    sched = dpm_logsnr(TRAIN, 20)
    a = SAMPLERS["dpm-solver-3s"](toy.gaussian_denoiser(TRAIN, MU, S), (X,), sched)[0]
    b = SAMPLERS["dpmpp-3s"](toy.gaussian_denoiser(TRAIN, MU, S), (X,), sched)[0]
    assert float((a - b).abs().max()) > 1e-3


def test_clip_bounds_the_denoised_estimate():
    fn = toy.gaussian_denoiser(TRAIN, mu=5.0, s=0.1)  # data far outside [-1, 1]
    x = torch.randn(8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sched = dpm_logsnr(TRAIN, 20)
    free = sample_dpm_solver_3s(fn, (x,), sched)[0]
    clipped = sample_dpm_solver_3s(fn, (x,), sched, clip=True)[0]
    assert float(free.min()) > 4 and float(clipped.abs().max()) <= 1 + 0.02  # + σ_0·|ε| at t = 0


def test_q_sample_uses_float64_tables():
    # √(1-ᾱ_0) of a float32 ᾱ_0 = 0.9999 is 8e-5 (relative) off; the original's tables are float64.
    t = torch.tensor([0, 1, 500])
    noise = torch.ones(3, 4)
    out = q_sample(torch.zeros(3, 4), t, noise, TRAIN)
    want = (1 - TRAIN.alphas_cumprod[t]).sqrt().float()[:, None].expand(3, 4)
    torch.testing.assert_close(out, want, rtol=2e-7, atol=0)
    x0 = torch.ones(3, 4)
    out = q_sample(x0, t, torch.zeros(3, 4), TRAIN)
    torch.testing.assert_close(out, TRAIN.alphas_cumprod[t].sqrt().float()[:, None].expand(3, 4), rtol=2e-7, atol=0)


def test_vb_rescaling_is_a_recorded_setting():
    sched = DiffusionConfig(steps=100).schedule_obj()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 4, 4, generator=g)
    out = torch.randn(2, 6, 4, 4, generator=g).clamp(-1, 1)
    t = torch.tensor([3, 70])

    def loss(rescale):
        return training_loss(lambda xt, tt: (out,), (x0,), t, sched, noise=(noise,), learned_sigma=True,
                             names=("v",), rescale_vb=rescale)["vb_v"]

    plain = vb_term(out[:, :3], out[:, 3:], x0, q_sample(x0, t, noise, sched), t, sched)
    torch.testing.assert_close(loss(False), plain)
    torch.testing.assert_close(loss(True), plain * 0.1)
    # Recorded with the model; files from before the setting read as the old behaviour (rescaled).
    assert DiffusionConfig(rescale_vb=False).to_dict()["rescale_vb"] is False
    assert DiffusionConfig.from_dict({"steps": 1000, "variance": "learned_range"}).rescale_vb is True
    # The seed's SR training config does not rescale (its rescale_learned_sigmas is false).
    assert load_config("sr-64-256").diffusion.rescale_vb is False
