"""Samplers: short functions over a denoiser, and the registry that gives each one its defaults.
(Over 400 lines because the registry belongs next to every sampler it names; each sampler stays short.)

Every sampler takes
  - `model_fn(x, t) -> Prediction | tuple[Tensor, ...]` (usually a `denoisers.Denoiser`): x is a tuple of
    tensors (one per modality; a single-modality model gets a 1-tuple), t a [B] long tensor of training
    timesteps; it returns ε for each element (and, for learned-variance models, the variance values as
    `Prediction.var_values`);
  - `x`: the tuple of starting noises at the noisiest timestep;
  - `schedule`: the training schedule respaced to the timesteps to visit (`respace.respaced`). Step i goes
    from schedule index i to i-1 and the last step (i = 0) returns clean data, so N steps cost exactly
    N model calls for every sampler. (The one exception to "clean data": the seed's `dpm-solver-3s` on
    its own `dpm-logsnr` grid stops at t = 0 and returns x there, as the original did.)
The same update is applied to every element of the tuple. `noise(like)` draws fresh Gaussian noise for
the stochastic samplers (pass per-sample generators through it to make samples batch-independent).

`SAMPLERS` maps each name to a `SamplerSpec` (the function, its default step count and timestep
spacing, the options it accepts). `resolve_sampler` turns a name and optional overrides into a
`SamplerPlan` (the respaced schedule and validated options); `avbench sample` and the training previews
both go through it, so one sampler name always means the same timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from avbench.diffusion.denoisers import Denoiser, ModelFn, Prediction, as_prediction, denoise
from avbench.diffusion.gaussian import learned_log_variance
from avbench.diffusion.respace import SPACINGS, respaced
from avbench.diffusion.schedules import Schedule
from avbench.errors import SampleError

Tensors = tuple[torch.Tensor, ...]
NoiseFn = Callable[[Tensors], Tensors]
Callback = Callable[[int, int], None]

__all__ = [
    "SAMPLERS", "Prediction", "SamplerPlan", "SamplerSpec", "defaults_text", "dpm_solver_orders", "gaussian_noise",
    "resolve_sampler", "sample_ddim", "sample_ddpm", "sample_dpm_solver_3s", "sample_dpmpp_2m", "sample_dpmpp_3s",
    "sampler_spec", "singlestep_orders",
]


def gaussian_noise(like: Tensors) -> Tensors:
    return tuple(torch.randn_like(v) for v in like)


def _lam(schedule: Schedule, i: int) -> float:
    """Half log-SNR λ = log(α/σ) at schedule index i."""
    ac = float(schedule.alphas_cumprod[i])
    return 0.5 * (math.log(ac) - math.log1p(-ac))


def _alpha_sigma(schedule: Schedule, i: int) -> tuple[float, float]:
    ac = float(schedule.alphas_cumprod[i])
    return math.sqrt(ac), math.sqrt(1 - ac)


@torch.no_grad()
def sample_ddpm(
    model_fn: ModelFn,
    x: Sequence[torch.Tensor],
    schedule: Schedule,
    *,
    variance: str = "fixed_large",
    clip: bool = False,
    noise: NoiseFn = gaussian_noise,
    callback: Callback | None = None,
) -> Tensors:
    """Ancestral sampling: x_{i-1} ~ N(posterior mean(x̂0, x_i), σ_i²). `variance` is `fixed_large`,
    `fixed_small` or `learned_range` (then the model must return `var_values`)."""
    x = tuple(x)
    n = schedule.num_steps
    fixed_logvar = None if variance == "learned_range" else schedule.log_variance(variance)
    for step, i in enumerate(range(n - 1, -1, -1)):
        x0, _, pred = denoise(model_fn, x, schedule, i, clip)
        c1, c2 = float(schedule.posterior_mean_coef1[i]), float(schedule.posterior_mean_coef2[i])
        mean = tuple(c1 * a + c2 * b for a, b in zip(x0, x))
        if i == 0:
            x = mean
        else:
            z = noise(x)
            if fixed_logvar is not None:
                std = math.exp(0.5 * float(fixed_logvar[i]))
                x = tuple(m + std * zz for m, zz in zip(mean, z))
            else:
                if pred.var_values is None:
                    raise ValueError("variance='learned_range' needs a model that returns var_values")
                idx = torch.full((x[0].shape[0],), i, dtype=torch.long)
                x = tuple(m + torch.exp(0.5 * learned_log_variance(v, idx, schedule)) * zz
                          for m, v, zz in zip(mean, pred.var_values, z))
        if callback:
            callback(step + 1, n)
    return x


@torch.no_grad()
def sample_ddim(
    model_fn: ModelFn,
    x: Sequence[torch.Tensor],
    schedule: Schedule,
    *,
    eta: float = 0.0,
    clip: bool = False,
    noise: NoiseFn = gaussian_noise,
    callback: Callback | None = None,
) -> Tensors:
    """DDIM (Song et al. 2021, eq. 12). η = 0 is the deterministic probability-flow discretisation and
    draws no random numbers; η = 1 has the variance of ancestral sampling."""
    x = tuple(x)
    n = schedule.num_steps
    for step, i in enumerate(range(n - 1, -1, -1)):
        x0, eps, _ = denoise(model_fn, x, schedule, i, clip)
        ac = float(schedule.alphas_cumprod[i])
        ac_prev = float(schedule.alphas_cumprod_prev[i])
        sigma = eta * math.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev))
        dir_coef = math.sqrt(max(1 - ac_prev - sigma**2, 0.0))
        x = tuple(math.sqrt(ac_prev) * a + dir_coef * e for a, e in zip(x0, eps))
        if sigma > 0:
            x = tuple(v + sigma * z for v, z in zip(x, noise(x)))
        if callback:
            callback(step + 1, n)
    return x


def _phi(h: float) -> tuple[float, float, float]:
    """φ1 = e^{-h} - 1, φ2 = φ1/h + 1, φ3 = φ2/h - 1/2: the exponential-integrator weights of the 0th, 1st
    and 2nd λ-derivative of the data prediction over a step of size h (DPM-Solver++)."""
    phi1 = math.expm1(-h)
    phi2 = phi1 / h + 1
    return phi1, phi2, phi2 / h - 0.5


@torch.no_grad()
def sample_dpmpp_2m(
    model_fn: ModelFn,
    x: Sequence[torch.Tensor],
    schedule: Schedule,
    *,
    clip: bool = False,
    callback: Callback | None = None,
) -> Tensors:
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in the data prediction, one model call
    per step; the first step is first order and the last step returns the final x̂0."""
    x = tuple(x)
    n = schedule.num_steps
    prev_x0, prev_h = None, None
    for step, i in enumerate(range(n - 1, -1, -1)):
        x0, _, _ = denoise(model_fn, x, schedule, i, clip)
        if i == 0:
            x = x0
        else:
            (_, sig_s), (a_t, sig_t) = _alpha_sigma(schedule, i), _alpha_sigma(schedule, i - 1)
            h = _lam(schedule, i - 1) - _lam(schedule, i)
            phi1 = math.expm1(-h)
            if prev_x0 is None:
                d = x0
            else:
                r = prev_h / h
                d = tuple((1 + 0.5 / r) * a - (0.5 / r) * b for a, b in zip(x0, prev_x0))
            x = tuple((sig_t / sig_s) * v - a_t * phi1 * dd for v, dd in zip(x, d))
            prev_x0, prev_h = x0, h
        if callback:
            callback(step + 1, n)
    return x


def singlestep_orders(num_steps: int, order: int = 3) -> list[int]:
    """How DPM-Solver++ singlestep spends `num_steps` model calls: the last call denoises from the last
    timestep, the others are grouped into steps of `order` calls, a lower-order step taking the rest
    (at the end, as DPM-Solver does)."""
    m = num_steps - 1
    return [order] * (m // order) + ([m % order] if m % order else [])


@torch.no_grad()
def sample_dpmpp_3s(
    model_fn: ModelFn,
    x: Sequence[torch.Tensor],
    schedule: Schedule,
    *,
    clip: bool = False,
    callback: Callback | None = None,
) -> Tensors:
    """DPM-Solver++ (data prediction) singlestep of order 3; the seed's noise-prediction DPM-Solver is
    `sample_dpm_solver_3s`. Each step from s to t calls
    the model at s and at the two intermediate timesteps of the grid; the λ-ratios r1, r2 follow from the
    grid, so the model only ever sees training timesteps. Uses the Taylor form, third order for any
    r1 < r2 < 1."""
    x = tuple(x)
    n = schedule.num_steps
    calls = 0

    def x0_at(v: Tensors, i: int) -> Tensors:
        nonlocal calls
        out = denoise(model_fn, v, schedule, i, clip)[0]
        calls += 1
        if callback:
            callback(calls, n)
        return out

    def partial(v: Tensors, s: int, j: int, m_s: Tensors, d1: Tensors | None = None) -> Tensors:
        """Step from s to j with x̂0 ≈ m_s (+ d1 as the λ-slope times the step, if given)."""
        (_, sig_s), (a_j, sig_j) = _alpha_sigma(schedule, s), _alpha_sigma(schedule, j)
        phi1, phi2, _ = _phi(_lam(schedule, j) - _lam(schedule, s))
        out = tuple((sig_j / sig_s) * a - a_j * phi1 * b for a, b in zip(v, m_s))
        if d1 is not None:
            out = tuple(o + a_j * phi2 * d for o, d in zip(out, d1))
        return out

    i = n - 1
    for order in singlestep_orders(n, 3):
        s, t = i, i - order
        m_s = x0_at(x, s)
        h = _lam(schedule, t) - _lam(schedule, s)
        if order == 1:
            x = partial(x, s, t, m_s)
        elif order == 2:
            s1 = s - 1
            r1 = (_lam(schedule, s1) - _lam(schedule, s)) / h
            m_s1 = x0_at(partial(x, s, s1, m_s), s1)
            x = partial(x, s, t, m_s, tuple((b - a) / r1 for a, b in zip(m_s, m_s1)))
        else:
            s1, s2 = s - 1, s - 2
            r1 = (_lam(schedule, s1) - _lam(schedule, s)) / h
            r2 = (_lam(schedule, s2) - _lam(schedule, s)) / h
            m_s1 = x0_at(partial(x, s, s1, m_s), s1)
            # Second-order prediction at s2, its slope estimated from s1 and rescaled to the s→s2 step.
            m_s2 = x0_at(partial(x, s, s2, m_s, tuple((r2 / r1) * (b - a) for a, b in zip(m_s, m_s1))), s2)
            d1_0 = tuple((b - a) / r1 for a, b in zip(m_s, m_s1))
            d1_1 = tuple((c - a) / r2 for a, c in zip(m_s, m_s2))
            d1 = tuple((r2 * p - r1 * q) / (r2 - r1) for p, q in zip(d1_0, d1_1))
            d2 = tuple(2 * (q - p) / (r2 - r1) for p, q in zip(d1_0, d1_1))
            (_, sig_s), (a_t, sig_t) = _alpha_sigma(schedule, s), _alpha_sigma(schedule, t)
            phi1, phi2, phi3 = _phi(h)
            x = tuple((sig_t / sig_s) * v - a_t * phi1 * m + a_t * phi2 * p - a_t * phi3 * q
                      for v, m, p, q in zip(x, m_s, d1, d2))
        i = t
    assert i == 0
    return x0_at(x, 0)


def dpm_solver_orders(num_steps: int, order: int = 3) -> list[int]:
    """DPM-Solver's "fast" order schedule for `num_steps` model calls (its `get_orders_for_singlestep_solver`):
    steps of `order` calls, the remainder spent on one lower-order step at the end (20 → [3]*6 + [2]; a
    multiple of 3 ends with [2, 1])."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    if order == 1 or num_steps == 0:
        return [1] * num_steps
    if order == 2:
        return [2] * (num_steps // 2) + [1] * (num_steps % 2)
    k = num_steps // 3 + 1
    return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[num_steps % 3]


@torch.no_grad()
def sample_dpm_solver_3s(
    model_fn: ModelFn,
    x: Sequence[torch.Tensor],
    schedule: Schedule,
    *,
    clip: bool = False,
    callback: Callback | None = None,
) -> Tensors:
    """DPM-Solver (Lu et al. 2022) with the noise prediction, singlestep, order 3: MM-Diffusion's sampler.

    The grid is the schedule's timesteps, noisiest first, down to `schedule.final_alpha_cumprod`. On the
    seed's grid (`respace.dpm_logsnr`, spacing `dpm-logsnr`) that end is t = 0 and the result is x there,
    not x̂0: N steps are N model calls grouped by `dpm_solver_orders(N)`. On any other schedule the end is
    clean data, which no λ-step reaches: the solver runs to the last timestep with N - 1 calls and the
    last call denoises there (DPM-Solver's `denoise=True`). Intermediate points of each step are grid
    points, so the model only sees the grid's timesteps. `clip` clamps x̂0 and re-derives ε (off in the seed).
    """
    x = tuple(x)
    n = schedule.num_steps
    ends_at_data = schedule.final_alpha_cumprod >= 1.0
    # grid[k]: ᾱ of point k, noisiest first; the last point is where the solver stops
    grid = [float(v) for v in schedule.alphas_cumprod.flip(0)]
    grid += [] if ends_at_data else [schedule.final_alpha_cumprod]
    lam = [0.5 * (math.log(a) - math.log1p(-a)) for a in grid]
    alpha = [math.sqrt(a) for a in grid]
    sigma = [math.sqrt(1 - a) for a in grid]
    calls = 0

    def eps_at(v: Tensors, k: int) -> Tensors:
        nonlocal calls
        t = torch.full((v[0].shape[0],), schedule.timesteps[n - 1 - k], dtype=torch.long, device=v[0].device)
        eps = as_prediction(model_fn(v, t)).eps
        if len(eps) != len(v):
            raise ValueError(f"model returned {len(eps)} outputs for {len(v)} inputs")
        if clip:
            x0 = tuple(((a - sigma[k] * e) / alpha[k]).clamp(-1, 1) for a, e in zip(v, eps))
            eps = tuple((a - alpha[k] * b) / sigma[k] for a, b in zip(v, x0))
        calls += 1
        if callback:
            callback(calls, n)
        return eps

    def first(v: Tensors, s: int, j: int, e_s: Tensors) -> Tensors:
        """DPM-Solver-1 (DDIM) from point s to point j."""
        c = sigma[j] * math.expm1(lam[j] - lam[s])
        return tuple((alpha[j] / alpha[s]) * a - c * e for a, e in zip(v, e_s))

    k = 0
    for order in dpm_solver_orders(len(grid) - 1, 3):
        s, t = k, k + order
        h = lam[t] - lam[s]
        e_s = eps_at(x, s)
        if order == 1:
            x = first(x, s, t, e_s)
        elif order == 2:
            r1 = (lam[s + 1] - lam[s]) / h
            e_1 = eps_at(first(x, s, s + 1, e_s), s + 1)
            c = (0.5 / r1) * sigma[t] * math.expm1(h)
            x = tuple(a - c * (b - e) for a, b, e in zip(first(x, s, t, e_s), e_1, e_s))
        else:
            r1, r2 = (lam[s + 1] - lam[s]) / h, (lam[s + 2] - lam[s]) / h
            e_1 = eps_at(first(x, s, s + 1, e_s), s + 1)
            phi_22 = math.expm1(r2 * h) / (r2 * h) - 1
            c2 = (r2 / r1) * sigma[s + 2] * phi_22
            x_2 = tuple(a - c2 * (b - e) for a, b, e in zip(first(x, s, s + 2, e_s), e_1, e_s))
            e_2 = eps_at(x_2, s + 2)
            c = (1 / r2) * sigma[t] * (math.expm1(h) / h - 1)
            x = tuple(a - c * (b - e) for a, b, e in zip(first(x, s, t, e_s), e_2, e_s))
        k = t
    if ends_at_data:
        e = eps_at(x, k)
        x = tuple((a - sigma[k] * b) / alpha[k] for a, b in zip(x, e))
    return x


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler and its defaults. `default_steps` None means every training step; `spacing` is the
    timestep spacing used when none is asked for (`respace.SPACINGS`); `options` are the keyword options
    a user may set (beyond `clip`, which every sampler takes). `stochastic` samplers take `noise`; DDPM
    also takes the model's `variance` type, which comes from the denoiser, never from the user."""

    fn: Callable[..., Tensors]
    default_steps: int | None
    spacing: str
    options: frozenset[str] = frozenset()
    stochastic: bool = False
    uses_variance: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Tensors:
        return self.fn(*args, **kwargs)


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(sample_ddpm, default_steps=None, spacing="linspace", stochastic=True, uses_variance=True),
    "ddim": SamplerSpec(sample_ddim, default_steps=50, spacing="linspace", options=frozenset({"eta"}), stochastic=True),
    # Log-SNR-uniform timesteps: time-uniform ones cost DPM-Solver++ 10-100x in accuracy on the linear
    # schedule (docs/sampling.md, "Measured accuracy").
    "dpmpp-2m": SamplerSpec(sample_dpmpp_2m, default_steps=20, spacing="logsnr"),
    "dpmpp-3s": SamplerSpec(sample_dpmpp_3s, default_steps=20, spacing="logsnr"),
    # MM-Diffusion's own sampler (noise prediction; py_scripts/multimodal_sample_sr.py, sample_fn dpm_solver):
    # 20 steps on its continuous log-SNR grid, returning x at t = 0.
    "dpm-solver-3s": SamplerSpec(sample_dpm_solver_3s, default_steps=20, spacing="dpm-logsnr"),
}

_LABELS = {"sampler": "sampler", "steps": "steps", "spacing": "spacing"}


def defaults_text(setting: str) -> str:
    """Each sampler's default `steps` or `spacing` as one phrase for help texts (read from the registry,
    so a CLI's help cannot drift from what runs): "ddpm: every training step, ddim: 50, ..."."""
    if setting == "steps":
        return ", ".join(f"{n}: {s.default_steps or 'every training step'}" for n, s in SAMPLERS.items())
    if setting == "spacing":
        return ", ".join(f"{n}: {s.spacing}" for n, s in SAMPLERS.items())
    raise ValueError(f"no per-sampler default for {setting!r}")


def sampler_spec(name: str, options: Mapping[str, Any] | None = None, *,
                 labels: Mapping[str, str] | None = None) -> SamplerSpec:
    """The registry entry for `name`, after checking that it accepts every key of `options`.
    `labels` name the settings as the caller's user spells them (e.g. {"sampler": "--sampler"}), so the
    one-line `SampleError` points at the right flag or config key."""
    lab = {**_LABELS, **(labels or {})}
    spec = SAMPLERS.get(name)
    if spec is None:
        raise SampleError(f"{lab['sampler']} {name!r} is not a sampler; choose one of {', '.join(SAMPLERS)}")
    unknown = sorted(set(options or {}) - spec.options)
    if unknown:
        accepted = ", ".join(sorted(spec.options)) or "no options"
        raise SampleError(f"{lab.get(unknown[0], unknown[0])} does not apply to {lab['sampler']} {name}; "
                          f"{name} accepts: {accepted}")
    return spec


@dataclass(frozen=True)
class SamplerPlan:
    """A sampler resolved against a model's training schedule: the timesteps it visits and its options."""

    name: str
    spec: SamplerSpec
    schedule: Schedule  # the training schedule respaced to the visited timesteps
    spacing: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def timesteps(self) -> list[int]:
        return self.schedule.timesteps

    @property
    def steps(self) -> int:
        return self.schedule.num_steps

    def run(self, denoiser: Denoiser, x: Sequence[torch.Tensor], *, clip: bool, noise: NoiseFn = gaussian_noise,
            callback: Callback | None = None) -> Tensors:
        """Sample from the noises `x`. DDPM takes σ_t from `denoiser.variance` (the learned variance of a
        `learned_range` model), which is why this needs a `Denoiser` rather than a bare function."""
        if not isinstance(denoiser, Denoiser):
            raise TypeError("SamplerPlan.run needs a denoisers.Denoiser, which carries the model's variance type; "
                            "wrap the model function as Denoiser(fn, variance)")
        kw: dict[str, Any] = {**self.options, "clip": clip, "callback": callback}
        if self.spec.stochastic:
            kw["noise"] = noise
        if self.spec.uses_variance:
            kw["variance"] = denoiser.variance
        return self.spec.fn(denoiser, x, self.schedule, **kw)


def resolve_sampler(name: str, train_schedule: Schedule, *, steps: int | None = None, spacing: str | None = None,
                    options: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None) -> SamplerPlan:
    """The `SamplerPlan` for sampler `name` on a model trained with `train_schedule`: `steps` and
    `spacing` default to the sampler's own (`SAMPLERS[name]`), `options` must be ones it accepts.
    Raises `SampleError` (one line, naming the setting by its `labels` spelling) on anything else."""
    lab = {**_LABELS, **(labels or {})}
    spec = sampler_spec(name, options, labels=labels)
    total = train_schedule.num_steps
    n = steps if steps is not None else (spec.default_steps or total)
    if not 1 <= n <= total:
        raise SampleError(f"{lab['steps']} {n}: the model was trained with {total} diffusion steps, "
                          f"so choose 1..{total} sampling steps")
    spacing = spacing or spec.spacing
    if spacing not in SPACINGS:
        raise SampleError(f"{lab['spacing']} {spacing!r}: choose one of {', '.join(SPACINGS)}")
    return SamplerPlan(name, spec, respaced(train_schedule, n, spacing), spacing, dict(options or {}))
