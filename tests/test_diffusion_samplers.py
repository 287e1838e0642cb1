"""Samplers against problems with a known answer (`avbench.diffusion.toy`: Gaussian data, exact denoiser).

The DDPM marginal tests also check the toy itself: its samples must have the data's mean and std.
"""

from __future__ import annotations


import pytest
import torch

from avbench.diffusion import toy
from avbench.diffusion.respace import respaced
from avbench.diffusion.samplers import SAMPLERS, Prediction, sample_ddim, sample_ddpm, singlestep_orders
from avbench.diffusion.schedules import DiffusionConfig, Schedule

MU, S = 0.3, 0.5
TRAIN = DiffusionConfig(steps=1000).schedule_obj()


def gaussian_denoiser(schedule: Schedule, mu: float = MU, s: float = S, calls: list | None = None):
    return toy.gaussian_denoiser(schedule, mu, s, calls)


def exact_result(x: torch.Tensor, sched: Schedule) -> torch.Tensor:
    return toy.exact_sample(x, sched, MU, S)


X = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]


def max_error(name: str, steps: int, spacing: str = "logsnr") -> float:
    sched = respaced(TRAIN, steps, spacing)
    out = SAMPLERS[name](gaussian_denoiser(TRAIN), (X,), sched)[0]
    return float((out - exact_result(X, sched)).abs().max())


@pytest.mark.parametrize("name,steps,tol", [
    ("dpmpp-3s", 20, 6e-3), ("dpmpp-3s", 50, 3e-4),
    ("dpmpp-2m", 20, 0.04), ("dpmpp-2m", 50, 8e-3),
    ("ddim", 50, 0.1),
])
def test_ode_samplers_reach_the_exact_flow(name, steps, tol):
    # Inputs span ±3σ of the prior; outputs have std 0.5, so tol is relative to a 3-unit output range.
    assert max_error(name, steps) < tol


def test_errors_shrink_with_steps_and_order():
    e = {(n, k): max_error(n, k) for n in ("ddim", "dpmpp-2m", "dpmpp-3s") for k in (20, 80)}
    for n in ("ddim", "dpmpp-2m", "dpmpp-3s"):
        assert e[(n, 80)] < e[(n, 20)] / 3
    assert e[("dpmpp-3s", 20)] < e[("dpmpp-2m", 20)] < e[("ddim", 20)]


def test_point_mass_is_exact_for_every_deterministic_sampler():
    # With data = one point the x0-prediction is constant, so any step count lands on it.
    fn = gaussian_denoiser(TRAIN, mu=0.7, s=0.0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for name in ("ddim", "dpmpp-2m", "dpmpp-3s"):
        for steps in (1, 7, 20):
            out = SAMPLERS[name](fn, (x,), respaced(TRAIN, steps, "linspace"))[0]
            torch.testing.assert_close(out, torch.full_like(x, 0.7), atol=1e-9, rtol=0)


def test_every_sampler_makes_exactly_steps_model_calls_at_training_timesteps():
    for name in SAMPLERS:
        for steps in (1, 2, 3, 4, 10, 20):
            calls: list[int] = []
            sched = respaced(TRAIN, steps, "logsnr")
            kw = {"variance": "fixed_small"} if name == "ddpm" else {}
            SAMPLERS[name](gaussian_denoiser(TRAIN, calls=calls), (X,), sched, **kw)
            assert len(calls) == steps, (name, steps)
            assert sorted(set(calls)) == sched.timesteps and calls[0] == max(sched.timesteps)


def test_singlestep_orders_spend_the_budget():
    assert singlestep_orders(20) == [3] * 6 + [1]
    assert singlestep_orders(2) == [1] and singlestep_orders(4) == [3]
    assert singlestep_orders(21) == [3] * 6 + [2]
    for n in range(1, 40):
        assert sum(singlestep_orders(n)) + 1 == n


def test_tuples_get_the_same_update_per_element():
    x2 = (X, 2 * X)
    sched = respaced(TRAIN, 10, "logsnr")
    for name in ("ddim", "dpmpp-2m", "dpmpp-3s"):
        a, b = SAMPLERS[name](gaussian_denoiser(TRAIN), x2, sched)
        torch.testing.assert_close(a, SAMPLERS[name](gaussian_denoiser(TRAIN), (X,), sched)[0])
        torch.testing.assert_close(b, SAMPLERS[name](gaussian_denoiser(TRAIN), (2 * X,), sched)[0])


def test_wrong_training_step_count_is_far_off():
    # Why checkpoints store the step count: the seed trained with 2000 steps and sampled with 1000.
    trained = DiffusionConfig(steps=2000).schedule_obj()
    sched = respaced(TRAIN, 20, "logsnr")
    out = SAMPLERS["dpmpp-3s"](gaussian_denoiser(trained), (X,), sched)[0]
    assert float((out - exact_result(X, sched)).abs().max()) > 0.3
    right = respaced(trained, 20, "logsnr")
    out = SAMPLERS["dpmpp-3s"](gaussian_denoiser(trained), (X,), right)[0]
    assert float((out - exact_result(X, right)).abs().max()) < 6e-3


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_marginals_match_the_data(variance):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4000, 1, dtype=torch.float64, generator=g)
    out = sample_ddpm(gaussian_denoiser(TRAIN), (x,), TRAIN, variance=variance,
                      noise=lambda like: tuple(torch.randn(v.shape, dtype=v.dtype, generator=g) for v in like))[0]
    # Standard errors with 4000 samples: 0.008 (mean), 0.006 (std).
    assert abs(float(out.mean()) - MU) < 0.03
    assert abs(float(out.std()) - S) < 0.03


def test_ddim_eta_one_also_matches_marginals_with_respacing():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4000, 1, dtype=torch.float64, generator=g)
    out = sample_ddim(gaussian_denoiser(TRAIN), (x,), respaced(TRAIN, 100), eta=1.0,
                      noise=lambda like: tuple(torch.randn(v.shape, dtype=v.dtype, generator=g) for v in like))[0]
    assert abs(float(out.mean()) - MU) < 0.03
    assert abs(float(out.std()) - S) < 0.04


def test_learned_range_at_minus_one_is_the_posterior_variance():
    # var_values = -1 selects the posterior variance, i.e. exactly fixed_small.
    base = gaussian_denoiser(TRAIN)

    def learned(x, t):
        eps = base(x, t)
        return Prediction(eps, tuple(-torch.ones_like(e) for e in eps))

    sched = respaced(TRAIN, 50)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def run(fn, variance):
        g = torch.Generator().manual_seed(4)
        noise = lambda like: tuple(torch.randn(v.shape, dtype=v.dtype, generator=g) for v in like)  # noqa: E731
        return sample_ddpm(fn, (x,), sched, variance=variance, noise=noise)[0]

    torch.testing.assert_close(run(learned, "learned_range"), run(base, "fixed_small"))


def test_clip_keeps_the_denoised_estimate_in_range():
    fn = gaussian_denoiser(TRAIN, mu=5.0, s=0.1)  # data far outside [-1, 1]
    x = torch.randn(8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for name in ("ddim", "dpmpp-2m", "dpmpp-3s"):
        out = SAMPLERS[name](fn, (x,), respaced(TRAIN, 10), clip=True)[0]
        assert float(out.abs().max()) <= 1 + 1e-9
