"""Schedules, respacing, q_sample and the training losses."""

from __future__ import annotations

import math

import pytest
import torch

from avbench.diffusion.gaussian import q_posterior, q_sample, training_loss, vb_term
from avbench.diffusion.respace import logsnr_timesteps, respaced, space_timesteps
from avbench.diffusion.schedules import DiffusionConfig, Schedule, cosine_betas, linear_betas, make_betas


def test_linear_schedule_matches_ddpm_and_rescales_with_step_count():
    b = linear_betas(1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    # 100 steps cover the same noise range: ᾱ_T is about as small.
    ac1000 = float(Schedule(b).alphas_cumprod[-1])
    ac100 = float(Schedule(linear_betas(100)).alphas_cumprod[-1])
    assert ac1000 < 1e-4 and ac100 < 1e-3


def test_cosine_schedule_follows_its_alpha_bar():
    T = 200
    ac = Schedule(cosine_betas(T)).alphas_cumprod

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 50, 100, 150):
        assert float(ac[t]) == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert float(cosine_betas(T).max()) <= 0.999


def test_unknown_settings_fail_with_a_named_choice():
    with pytest.raises(ValueError, match="linear, cosine"):
        make_betas("quadratic", 10)
    with pytest.raises(ValueError, match="variance"):
        DiffusionConfig(variance="learned")
    with pytest.raises(ValueError, match="inconsistent"):
        DiffusionConfig.from_dict({"steps": 10, "variance": "fixed_large", "learned_sigma": True})
    d = DiffusionConfig(steps=2000, schedule="cosine", variance="learned_range").to_dict()
    assert d["learned_sigma"] is True and DiffusionConfig.from_dict(d).steps == 2000


def test_space_timesteps_forms():
    assert space_timesteps(1000, 4) == [0, 333, 666, 999]
    assert space_timesteps(1000, "ddim25")[:3] == [0, 40, 80] and len(space_timesteps(1000, "ddim25")) == 25
    with pytest.raises(ValueError):
        space_timesteps(100, "10,0")
    sec = space_timesteps(100, "5,2")
    assert sec == [0, 12, 24, 37, 49, 50, 99]
    with pytest.raises(ValueError, match="cannot take"):
        space_timesteps(10, 11)


def test_logsnr_grid_is_distinct_and_spans_the_schedule():
    sched = DiffusionConfig().schedule_obj()
    for n in (2, 20, 50, 200, 1000):
        ts = logsnr_timesteps(sched, n)
        assert len(ts) == n == len(set(ts)) and ts == sorted(ts)
        assert ts[0] == 0 and ts[-1] == 999


def test_respacing_keeps_alpha_bar_and_full_respacing_is_identity():
    base = DiffusionConfig().schedule_obj()
    sub = respaced(base, 37)
    assert sub.num_train_steps == 1000
    torch.testing.assert_close(sub.alphas_cumprod, base.alphas_cumprod[sub.timesteps])
    full = base.respace(range(1000))
    for name in ("betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                 "posterior_mean_coef1", "posterior_mean_coef2"):
        torch.testing.assert_close(getattr(full, name), getattr(base, name))
    with pytest.raises(ValueError, match="already respaced"):
        sub.respace([0, 1])


def test_q_sample_and_posterior_agree_with_bayes():
    sched = Schedule(linear_betas(50))
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200000, 1), 0.4, dtype=torch.float64)
    t = torch.full((x0.shape[0],), 20)
    # Joint draw of (x_{t-1}, x_t) via the forward chain, then compare the conditional moments.
    ac_prev = float(sched.alphas_cumprod[19])
    x_prev = math.sqrt(ac_prev) * x0 + math.sqrt(1 - ac_prev) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    beta = float(sched.betas[20])
    x_t = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mean, logvar = q_posterior(x0, x_t, t, sched)
    resid = x_prev - mean
    assert abs(float(resid.mean())) < 3e-3
    assert float(resid.var()) == pytest.approx(math.exp(float(logvar[0])), rel=0.02)
    # q_sample reproduces the marginal of the chain.
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xs = q_sample(x0, t, noise, sched)
    assert float(xs.var()) == pytest.approx(float(x_t.var()), rel=0.02)


def test_eps_loss_is_zero_for_the_true_noise_and_sums_modalities():
    sched = DiffusionConfig(steps=100).schedule_obj()
    g = torch.Generator().manual_seed(1)
    video, audio = torch.randn(3, 2, 3, 4, 4, generator=g), torch.randn(3, 1, 32, generator=g)
    noise = (torch.randn(video.shape, generator=g), torch.randn(audio.shape, generator=g))
    t = torch.tensor([0, 50, 99])
    terms = training_loss(lambda x, tt: noise, (video, audio), t, sched, noise=noise, names=("video", "audio"))
    assert float(terms["loss"].abs().max()) == 0.0
    zero = training_loss(lambda x, tt: tuple(torch.zeros_like(v) for v in x), (video, audio), t, sched,
                         noise=noise, names=("video", "audio"))
    torch.testing.assert_close(zero["loss"], zero["mse_video"] + zero["mse_audio"])
    torch.testing.assert_close(zero["mse_audio"], (noise[1] ** 2).mean(dim=(1, 2)))


def test_hybrid_vb_term_vanishes_for_the_exact_posterior():
    # ε exact and var_values = -1 (the posterior variance) make p = q for t > 0: KL = 0.
    sched = DiffusionConfig(steps=100, variance="learned_range").schedule_obj()
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 40, 99])
    x_t = q_sample(x0, t, noise, sched)
    vb = vb_term(noise, -torch.ones_like(x0), x0, x_t, t, sched)
    assert torch.all(vb[1:].abs() < 1e-9)
    assert float(vb[0]) > 0  # decoder NLL at t = 0
    wrong = vb_term(noise, torch.ones_like(x0), x0, x_t, t, sched)
    assert torch.all(wrong[1:] > vb[1:])
    # Through training_loss: 6 output channels, the VB term only trains the variance channels.
    out = torch.cat([noise, -torch.ones_like(x0)], 1).requires_grad_()
    terms = training_loss(lambda x, tt: (out,), (x0,), t, sched, noise=(noise,), learned_sigma=True, names=("v",))
    terms["vb_v"].sum().backward()
    assert float(out.grad[:, :3].abs().max()) == 0.0 and float(out.grad[:, 3:].abs().max()) > 0
