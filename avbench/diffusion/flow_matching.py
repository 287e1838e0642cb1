"""Flow matching at inference (MMAudio, Cheng et al.): integrate a learned velocity from noise to data.

The convention is MMAudio's: t = 0 is the Gaussian prior, t = 1 the data, and the network predicts the
velocity dx/dt. `euler` takes `steps` equal steps on the float32 grid linspace(0, 1 - min_sigma, steps + 1);
each step costs one velocity call (two with classifier-free guidance, made by `guided_velocity`).

A velocity callable is `fn(t, x) -> v` with t a [B] tensor in x's dtype (every sample at the same time),
so a model wrapper never has to broadcast a scalar itself. No model code is imported here: the caller
binds the network and its conditions into the callable.

`FLOW_SAMPLERS` is the registry of flow samplers with their defaults (25 steps, guidance 4.5: MMAudio's
released settings), the counterpart of `samplers.SAMPLERS` for the noise-prediction models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from avbench.errors import SampleError

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, int], None]

__all__ = ["FLOW_SAMPLERS", "FlowSamplerSpec", "Velocity", "flow_sampler", "guided_velocity", "prior_noise",
           "sample_flow_euler", "time_grid"]


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0, min_sigma: float = 0.0) -> torch.Tensor:
    """The `steps + 1` times the Euler integrator visits, float32 on the CPU: the grid is fixed before any
    model runs, and keeping it in float32 whatever the model's dtype makes bf16 runs step like fp32 ones."""
    if steps < 1:
        raise SampleError(f"--steps {steps}: flow matching needs at least one Euler step")
    return torch.linspace(t0, t1 - min_sigma, steps + 1, dtype=torch.float32)


def guided_velocity(conditional: Velocity, unconditional: Velocity, cfg_strength: float) -> Velocity:
    """Classifier-free guidance as MMAudio combines the two flows: s·v_cond + (1 - s)·v_uncond.
    Below s = 1 the unconditional branch is not evaluated at all (MMAudio's rule, which also means
    0 < s < 1 does NOT interpolate towards the unconditional flow)."""
    if cfg_strength < 1.0:
        return conditional

    def fn(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return cfg_strength * conditional(t, x) + (1 - cfg_strength) * unconditional(t, x)

    return fn


@torch.no_grad()
def sample_flow_euler(velocity: Velocity, x0: torch.Tensor, *, steps: int = 25, t0: float = 0.0, t1: float = 1.0,
                      min_sigma: float = 0.0, callback: Callback | None = None) -> torch.Tensor:
    """Euler from `x0` at time t0 to t1 (0 → 1: prior → data). The step size stays a float32 0-d tensor,
    so in half precision the update rounds like the reference implementation's."""
    grid = time_grid(steps, t0, t1, min_sigma)
    x = x0
    for i in range(steps):
        t = torch.full((x.shape[0],), float(grid[i]), dtype=x.dtype, device=x.device)
        x = x + (grid[i + 1] - grid[i]) * velocity(t, x)
        if callback:
            callback(i + 1, steps)
    return x


def prior_noise(shape: tuple[int, ...], seed: int | torch.Generator, *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The starting point at t = 0: standard normal from a generator on `device` seeded with `seed`
    (as MMAudio draws it, so one seed gives MMAudio's own noise on the same device)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(shape, generator=gen, device=device, dtype=dtype)


@dataclass(frozen=True)
class FlowSamplerSpec:
    """One flow sampler and the defaults a run takes when none are given."""

    fn: Callable[..., torch.Tensor]
    default_steps: int
    default_cfg_strength: float
    min_sigma: float = 0.0

    def __call__(self, velocity: Velocity, x0: torch.Tensor, *, steps: int | None = None,
                 callback: Callback | None = None) -> torch.Tensor:
        return self.fn(velocity, x0, steps=self.default_steps if steps is None else steps,
                       min_sigma=self.min_sigma, callback=callback)


FLOW_SAMPLERS: dict[str, FlowSamplerSpec] = {
    # MMAudio's demo and eval: FlowMatching(min_sigma=0, inference_mode='euler', num_steps=25), cfg 4.5.
    "euler": FlowSamplerSpec(sample_flow_euler, default_steps=25, default_cfg_strength=4.5),
}


def flow_sampler(name: str) -> FlowSamplerSpec:
    spec = FLOW_SAMPLERS.get(name)
    if spec is None:
        raise SampleError(f"flow sampler {name!r} is unknown; choose one of {', '.join(FLOW_SAMPLERS)}")
    return spec
