"""The sampler registry (defaults, option checks) and the denoiser wrappers (output splitting, the
variance type DDPM takes from them), with a real tiny SR U-Net and the toy Gaussian problem."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch

from avbench.diffusion import toy
from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.denoisers import Denoiser, Prediction, as_prediction, joint_denoiser, superres_denoiser
from avbench.diffusion.respace import respaced
from avbench.diffusion.samplers import SAMPLERS, resolve_sampler, sample_ddpm, sampler_spec
from avbench.diffusion.schedules import DiffusionConfig
from avbench.errors import SampleError
from avbench.models.superres import SuperResConfig, SuperResUNet
from avbench.sample.pipeline import SampleConfig

TRAIN = DiffusionConfig(steps=1000).schedule_obj()
SMALL = DiffusionConfig(steps=100).schedule_obj()


def seeded_noise(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda like: tuple(torch.randn(v.shape, dtype=v.dtype, generator=g) for v in like)


def test_each_sampler_carries_its_defaults():
    want = {"ddpm": (1000, "linspace"), "ddim": (50, "linspace"), "dpmpp-2m": (20, "logsnr"), "dpmpp-3s": (20, "logsnr"),
            "dpm-solver-3s": (20, "dpm-logsnr")}
    assert set(SAMPLERS) == set(want)
    for name, (steps, spacing) in want.items():
        plan = resolve_sampler(name, TRAIN)
        assert (plan.steps, plan.spacing) == (steps, spacing)
        assert plan.timesteps == respaced(TRAIN, steps, spacing).timesteps
    # Overrides win; a string spacing the registry does not know is refused.
    assert resolve_sampler("dpmpp-3s", TRAIN, steps=7, spacing="linspace").timesteps == respaced(TRAIN, 7).timesteps
    assert SAMPLERS["ddim"].options == {"eta"} and not SAMPLERS["dpmpp-3s"].options


def test_bad_names_options_and_steps_are_one_line_sample_errors():
    with pytest.raises(SampleError, match=r"^--sampler 'euler' is not a sampler; choose one of ddpm, ddim, dpmpp-2m, dpmpp-3s, dpm-solver-3s$"):
        resolve_sampler("euler", TRAIN, labels={"sampler": "--sampler"})
    with pytest.raises(SampleError, match=r"^--eta does not apply to --sampler dpmpp-3s; dpmpp-3s accepts: no options$"):
        sampler_spec("dpmpp-3s", {"eta": 0.5}, labels={"sampler": "--sampler", "eta": "--eta"})
    with pytest.raises(SampleError, match=r"order does not apply to sampler ddim; ddim accepts: eta$"):
        resolve_sampler("ddim", TRAIN, options={"order": 2})
    with pytest.raises(SampleError, match=r"^--steps 101: the model was trained with 100 diffusion steps, so choose 1\.\.100"):
        resolve_sampler("ddim", SMALL, steps=101, labels={"steps": "--steps"})
    with pytest.raises(SampleError, match="spacing 'cosine'"):
        resolve_sampler("ddim", SMALL, spacing="cosine")


def test_plan_run_passes_only_what_each_sampler_takes():
    fn = Denoiser(toy.gaussian_denoiser(TRAIN, 0.3, 0.5))
    x = (torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None],)
    for name in SAMPLERS:
        plan = resolve_sampler(name, TRAIN, steps=10)
        got = plan.run(fn, x, clip=False, noise=seeded_noise(1))[0]
        kw = {"noise": seeded_noise(1)} if SAMPLERS[name].stochastic else {}
        torch.testing.assert_close(got, SAMPLERS[name].fn(fn, x, plan.schedule, **kw)[0])
    eta = resolve_sampler("ddim", TRAIN, steps=10, options={"eta": 1.0})
    a = eta.run(fn, x, clip=False, noise=seeded_noise(2))[0]
    b = resolve_sampler("ddim", TRAIN, steps=10).run(fn, x, clip=False, noise=seeded_noise(2))[0]
    assert float((a - b).abs().max()) > 1e-3  # η reached the sampler
    with pytest.raises(TypeError, match="needs a denoisers.Denoiser"):
        eta.run(toy.gaussian_denoiser(TRAIN, 0.3, 0.5), x, clip=False)


def tiny_sr(learn_sigma: bool = True) -> SuperResUNet:
    torch.manual_seed(0)
    model = SuperResUNet(replace(SuperResConfig.tiny(), learn_sigma=learn_sigma))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():  # the output layer starts at zero: perturb so ε and σ are not constant
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_superres_denoiser_splits_eps_and_variance():
    model = tiny_sr()
    low = torch.rand(2, 3, 32, 32) * 2 - 1
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 50, dtype=torch.long)
    pred = superres_denoiser(model, low, "learned_range")((x,), t)
    out = model(x, t, low_res=low)
    torch.testing.assert_close(pred.eps[0], out[:, :3])
    torch.testing.assert_close(pred.var_values[0], out[:, 3:])
    with pytest.raises(SampleError, match="learn_sigma"):
        superres_denoiser(tiny_sr(learn_sigma=False), low, "learned_range")


def test_ddpm_with_a_learned_sigma_model_uses_its_variance():
    model = tiny_sr()
    low = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x = (torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)),)
    plan = resolve_sampler("ddpm", SMALL, steps=4)

    def sample(variance):
        return plan.run(superres_denoiser(model, low, variance), x, clip=True, noise=seeded_noise(3))[0]

    learned, fixed = sample("learned_range"), sample("fixed_large")
    raw = superres_denoiser(model, low, "learned_range")
    by_hand = sample_ddpm(raw, x, plan.schedule, variance="learned_range", clip=True, noise=seeded_noise(3))[0]
    torch.testing.assert_close(learned, by_hand, rtol=0, atol=0)
    assert float((learned - fixed).abs().mean()) > 1e-3  # the learned σ_t is not β_t


def test_joint_denoiser_and_replacement_keep_the_variance_type():
    calls = []

    def model(video, audio, t):
        calls.append(int(t[0]))
        return torch.cat([video, -video], dim=2), torch.cat([audio, 0 * audio], dim=1)

    v, a = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 1, 160)
    t = torch.full((2,), 3, dtype=torch.long)
    pred = joint_denoiser(model, "learned_range")((v, a), t)
    torch.testing.assert_close(pred.eps[0], v)
    torch.testing.assert_close(pred.var_values[0], -v)
    assert pred.var_values[1].abs().max() == 0
    plain = joint_denoiser(lambda video, audio, t: (video, audio))
    assert plain.variance == "fixed_large" and plain((v, a), t).var_values is None
    wrapped = replacement_model_fn(joint_denoiser(model, "learned_range"), SMALL, known=1, value=a, noise=torch.zeros_like(a))
    assert isinstance(wrapped, Denoiser) and wrapped.variance == "learned_range"
    assert wrapped((v, a), t).var_values is not None
    with pytest.raises(SampleError, match="must output 6 channels"):
        joint_denoiser(lambda video, audio, t: (video, audio), "learned_range")((v, a), t)


def test_as_prediction_is_the_one_normaliser():
    e = (torch.zeros(1),)
    assert as_prediction(e) == Prediction(e) and as_prediction(Prediction(e, e)).var_values == e


def test_help_texts_read_the_registry():
    helps = {f.name: f.metadata.get("help", "") for f in fields(SampleConfig)}
    for name, spec in SAMPLERS.items():
        assert f"{name}: {spec.spacing}" in helps["spacing"]
        assert f"{name}: {spec.default_steps or 'every training step'}" in helps["steps"]
