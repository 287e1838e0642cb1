"""Sampler accuracy on a problem with a known answer: max |sample - exact| over inputs in [-3, 3].

Data ~ N(0.3, 0.5²), exact denoiser, linear schedule with 1000 training steps (the seed's). Prints one
row per (sampler, spacing) and one column per step count. Run: python scripts/sampler_accuracy.py
"""

from __future__ import annotations

import torch

from avbench.diffusion import toy
from avbench.diffusion.respace import respaced
from avbench.diffusion.samplers import SAMPLERS
from avbench.diffusion.schedules import DiffusionConfig

MU, S = 0.3, 0.5
STEPS = (10, 20, 25, 50, 100)


def main() -> None:
    train = DiffusionConfig(steps=1000).schedule_obj()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    fn = toy.gaussian_denoiser(train, MU, S)
    print("| sampler | spacing | " + " | ".join(f"{n} steps" for n in STEPS) + " |")
    print("|---|---|" + "---|" * len(STEPS))
    for name in ("ddim", "dpmpp-2m", "dpmpp-3s"):
        for spacing in ("linspace", "leading", "logsnr"):
            errs = []
            for n in STEPS:
                sched = respaced(train, n, spacing)
                out = SAMPLERS[name](fn, (x,), sched)[0]
                errs.append(float((out - toy.exact_sample(x, sched, MU, S)).abs().max()))
            print(f"| {name} | {spacing} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")


if __name__ == "__main__":
    main()
