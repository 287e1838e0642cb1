"""Time the samplers' own arithmetic (everything but the model) at the seed's tensor shapes.

The denoiser is a constant, so the table shows what a sampler adds per model call: for the real MM-UNet
a forward pass costs far more. Run: python scripts/bench_sampler_overhead.py [--device cuda] [--batch 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from avbench.diffusion.denoisers import Denoiser
from avbench.diffusion.samplers import SAMPLERS, resolve_sampler
from avbench.diffusion.schedules import DiffusionConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    dev = torch.device(args.device)
    x = (torch.randn(args.batch, 16, 3, 64, 64, device=dev), torch.randn(args.batch, 1, 25600, device=dev))
    eps = tuple(0.1 * torch.randn_like(v) for v in x)
    train = DiffusionConfig().schedule_obj()
    model_fn = Denoiser(lambda xs, t: eps)

    print(f"| sampler | ms per step (batch {args.batch}, {args.device}) |")
    print("|---|---|")
    for name in SAMPLERS:
        plan = resolve_sampler(name, train, steps=args.steps)  # each sampler's own spacing, as `sample` runs it
        plan.run(model_fn, x, clip=True)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        plan.run(model_fn, x, clip=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        print(f"| {name} | {(time.perf_counter() - t0) / args.steps * 1e3:.1f} |")


if __name__ == "__main__":
    main()
