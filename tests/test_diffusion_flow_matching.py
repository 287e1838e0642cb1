"""Flow-matching Euler + classifier-free guidance against MMAudio's own FlowMatching on a toy field."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.diffusion.flow_matching import (
    FLOW_SAMPLERS,
    flow_sampler,
    guided_velocity,
    prior_noise,
    sample_flow_euler,
    time_grid,
)
from avbench.errors import SampleError

FIX = Path(__file__).parent / "fixtures" / "mmaudio" / "flow"


def _toy():
    meta = json.loads((FIX / "toy_flow.json").read_text())
    arr = np.load(FIX / "toy_flow.npz")
    W, b, U = (torch.from_numpy(arr[k]) for k in ("W", "b", "U"))

    def cond(t, x):
        return torch.tanh(x @ W) * (1 + t[:, None, None]) + b

    def uncond(t, x):
        return torch.sin(x @ U) * t[:, None, None] - 0.5 * x

    return meta, arr, cond, uncond


@pytest.mark.parametrize("case", range(6))
def test_euler_with_guidance_matches_original(case):
    meta, arr, cond, uncond = _toy()
    c = meta["cases"][case]
    x0 = torch.from_numpy(arr["x0"])
    got = sample_flow_euler(guided_velocity(cond, uncond, c["cfg_strength"]), x0, steps=c["steps"])
    ref = torch.from_numpy(arr[c["key"]])
    rel = (got - ref).abs().max() / ref.abs().max()
    assert rel <= 1e-5, (c, float(rel))


def test_prior_noise_is_the_originals_seeded_draw():
    meta, arr, _, _ = _toy()
    x0 = prior_noise(tuple(meta["shape"]), meta["seed"])
    assert torch.equal(x0, torch.from_numpy(arr["x0"]))


def test_guidance_below_one_skips_the_unconditional_branch():
    calls = []

    def cond(t, x):
        calls.append("c")
        return x

    def uncond(t, x):
        calls.append("u")
        return -x

    x = torch.ones(1, 2, 3)
    assert torch.equal(guided_velocity(cond, uncond, 0.5)(torch.zeros(1), x), x)
    assert calls == ["c"]
    # s = 4.5: 4.5·x + (1 - 4.5)·(-x) = 8·x
    assert torch.allclose(guided_velocity(cond, uncond, 4.5)(torch.zeros(1), x), 8 * x)


def test_grid_direction_and_time_passed_to_the_velocity():
    seen = []

    def v(t, x):
        seen.append(t.clone())
        return torch.ones_like(x)

    x = sample_flow_euler(v, torch.zeros(3, 1, 1), steps=4)
    assert torch.allclose(x, torch.ones(3, 1, 1))  # constant unit velocity over [0, 1]
    assert [float(t[0]) for t in seen] == [0.0, 0.25, 0.5, 0.75]
    assert all(t.shape == (3,) for t in seen)
    assert time_grid(25)[-1] == 1.0 and len(time_grid(25)) == 26


def test_registry_defaults_and_errors():
    spec = flow_sampler("euler")
    assert (spec.default_steps, spec.default_cfg_strength) == (25, 4.5)
    assert set(FLOW_SAMPLERS) == {"euler"}
    with pytest.raises(SampleError, match="choose one of euler"):
        flow_sampler("heun")
    with pytest.raises(SampleError, match="at least one"):
        time_grid(0)
