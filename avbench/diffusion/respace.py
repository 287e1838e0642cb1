"""Which training timesteps a sampler visits.

A sampler run with N steps visits N training timesteps; the schedule is respaced to exactly those (see
`Schedule.respace`), so the model is always called with the integer timesteps it was trained on.
"""

from __future__ import annotations

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


SPACINGS = ("linspace", "logsnr", "leading")


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


def respaced(schedule: Schedule, steps: int | str, spacing: str = "linspace") -> Schedule:
    """The training schedule respaced to `steps` sampling steps.

    `spacing`: `linspace` (time-uniform, both ends included), `logsnr` (log-SNR-uniform), `leading`
    (guided-diffusion's `ddimN` stride grid). A string `steps` is a guided-diffusion spec for
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
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return schedule.respace(keep)
