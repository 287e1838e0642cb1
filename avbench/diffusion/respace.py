"""Which training timesteps a sampler visits.

A sampler run with N steps visits N training timesteps; the schedule is respaced to exactly those (see
`Schedule.respace`), so the model is always called with the integer timesteps it was trained on.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avbench.diffusion.schedules import Schedule


def space_timesteps(num_train_steps: int, spec: int | str) -> list[int]:
    """Training timesteps to keep, ascending.

    `spec` forms:
      - `N` or `"N"`: N timesteps evenly spread over [0, T-1], both ends included (the first step starts
        from the noisiest timestep, the last one denoises from t = 0);
      - `"ddimN"`: guided-diffusion's `ddimN`: the grid 0, s, 2s, … with the smallest integer stride s that
        gives exactly N timesteps (s = T/N when N divides T; for T = 1000, `ddim30` has stride 34). Where no
        integer stride gives N (e.g. 300 of 1000), the first N points of the stride-T//N grid;
      - `"a,b,c"`: guided-diffusion sections: the range is cut into equal parts and part k gets its own
        evenly spread count (a section of count 1 keeps its first timestep, as guided-diffusion does).
    """
    T = int(num_train_steps)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return _even(0, T, int(spec))
    spec = spec.strip()
    if spec.startswith("ddim"):
        n = int(spec[4:])
        if not 1 <= n <= T:
            raise ValueError(f"cannot take {n} DDIM steps out of {T} training steps")
        for stride in range(1, T):
            if len(range(0, T, stride)) == n:
                return list(range(0, T, stride))
        stride = T // n
        return [i * stride for i in range(n)]
    counts = [int(c) for c in spec.split(",")]
    size, extra = divmod(T, len(counts))
    out, start = [], 0
    for k, count in enumerate(counts):
        length = size + (1 if k < extra else 0)
        out += [start] if count == 1 and length >= 1 else _even(start, length, count)
        start += length
    return out


def _even(start: int, length: int, count: int) -> list[int]:
    if not 1 <= count <= length:
        raise ValueError(f"cannot take {count} steps out of a section of {length} training steps")
    if count == 1:
        return [start + length - 1]
    stride = (length - 1) / (count - 1)
    return [start + round(i * stride) for i in range(count)]


SPACINGS = ("linspace", "logsnr", "leading", "dpm-logsnr")


def logsnr_timesteps(schedule: Schedule, count: int) -> list[int]:
    """`count` distinct training timesteps whose log-SNR is as close as possible to evenly spaced between
    the noisiest and the cleanest timestep (the DPM-Solver authors' choice for low-resolution images)."""
    T = schedule.num_steps
    if not 1 <= count <= T:
        raise ValueError(f"cannot take {count} steps out of {T} training steps")
    lam = 0.5 * (schedule.alphas_cumprod.log() - (1 - schedule.alphas_cumprod).log())  # decreasing in t
    targets = torch.linspace(float(lam[0]), float(lam[-1]), count, dtype=torch.float64)
    picked: list[int] = []
    for k, target in enumerate(targets):
        t = int((lam - target).abs().argmin())
        # Near t = 0 the log-SNR changes fast and neighbours round to the same timestep: keep them distinct
        # and leave room for the remaining ones.
        lo = picked[-1] + 1 if picked else 0
        picked.append(min(max(t, lo), T - (count - k)))
    return picked


def _half_log_snr(log_alpha: torch.Tensor) -> torch.Tensor:
    """λ = log α - log σ from log α (α² + σ² = 1)."""
    return log_alpha - 0.5 * torch.log(-torch.expm1(2 * log_alpha))


def dpm_logsnr(schedule: Schedule, count: int) -> Schedule:
    """The time grid of the seed's DPM-Solver (LuChengTHU's `NoiseScheduleVP('discrete')` with
    `skip_type='logSNR'`), as a schedule of `count` steps.

    DPM-Solver treats the training timesteps as the knots of a continuous time: log α is linear in time
    between them. It takes count + 1 points evenly spaced in λ from the noisiest timestep to the first one
    (t = 0, not clean data). The model is called at the first `count` points, at the integer part of their
    continuous time (the original's `.to(torch.int)`); ᾱ there is the continuous one, and the last step
    lands on ᾱ_0 (`final_alpha_cumprod`), where the solver returns x without a last model call.
    Integer timesteps may repeat for large counts (several points inside one training step).
    """
    T = schedule.num_steps
    if not 1 <= count <= T:
        raise ValueError(f"cannot take {count} steps out of {T} training steps")
    log_alpha = 0.5 * schedule.alphas_cumprod.log()  # decreasing in t
    lam = _half_log_snr(log_alpha)
    targets = torch.linspace(float(lam[-1]), float(lam[0]), count + 1, dtype=torch.float64)
    # λ → log α is exact; log α → continuous time interpolates the knots (log α is decreasing, so flip).
    target_log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(targets), -2 * targets)
    times = np.interp(target_log_alpha.numpy(), log_alpha.flip(0).numpy(), np.arange(T - 1, -1, -1, dtype=np.float64))
    times[0], times[-1] = T - 1, 0.0  # the ends are knots; keep interpolation round-off off the floor below
    steps_int = [math.floor(u) for u in times[:-1]]
    ac = torch.exp(2 * target_log_alpha)
    ac[0], ac[-1] = schedule.alphas_cumprod[-1], schedule.alphas_cumprod[0]
    calls = ac[:-1].flip(0)  # schedule index 0 = the cleanest call point
    betas = 1 - calls / torch.cat([torch.ones(1, dtype=torch.float64), calls[:-1]])
    return Schedule(betas, steps_int[::-1], T, final_alpha_cumprod=float(ac[-1]))


def respaced(schedule: Schedule, steps: int | str, spacing: str = "linspace") -> Schedule:
    """The training schedule respaced to `steps` sampling steps.

    `spacing`: `linspace` (time-uniform, both ends included), `logsnr` (log-SNR-uniform), `leading`
    (guided-diffusion's `ddimN` stride grid), `dpm-logsnr` (the seed DPM-Solver's continuous grid,
    `dpm_logsnr`). A string `steps` is a guided-diffusion spec for
    `space_timesteps` and ignores `spacing`.
    """
    if isinstance(steps, str) and not steps.strip().isdigit():
        return schedule.respace(space_timesteps(schedule.num_steps, steps))
    steps = int(steps)
    if spacing == "linspace":
        keep = space_timesteps(schedule.num_steps, steps)
    elif spacing == "logsnr":
        keep = logsnr_timesteps(schedule, steps)
    elif spacing == "leading":
        keep = space_timesteps(schedule.num_steps, f"ddim{steps}")
    elif spacing == "dpm-logsnr":
        return dpm_logsnr(schedule, steps)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return schedule.respace(keep)
