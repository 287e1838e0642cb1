"""Time the 64→256 super-resolution U-Net under its execution modes and print a table.

    python scripts/bench_superres.py --config seed --batch 4 --device cuda
    python scripts/bench_superres.py --config fixture_small --batch 1 --device cpu --modes fp32,bf16

Modes: fp32 (eager), bf16 (autocast, fp32 weights), compile (torch.compile of the whole model, bf16
autocast), ckpt (bf16 + gradient checkpointing). `--train` times forward+backward instead of forward.
All modes run the same function; only speed and memory differ.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from avbench.models.superres import SuperResConfig, SuperResUNet

MODES = ("fp32", "bf16", "compile", "ckpt")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(model: SuperResUNet, mode: str, batch: int, device: torch.device, train: bool,
              warmup: int, iters: int) -> tuple[float, float | None]:
    """Seconds per step and peak CUDA memory in GiB (None on CPU)."""
    cfg = model.cfg
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.large_size, cfg.large_size, generator=g).to(device)
    low_res = torch.randn(batch, cfg.in_channels, cfg.small_size, cfg.small_size, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)

    model.train(train)
    model.set_gradient_checkpointing(mode == "ckpt")
    fn = torch.compile(model) if mode == "compile" else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if mode != "fp32"
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            out = fn(x, t, low_res)
        if train:
            out.float().square().mean().backward()
            model.zero_grad(set_to_none=True)

    with torch.set_grad_enabled(train):
        for _ in range(warmup):
            step()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(iters):
            step()
        _sync(device)
        elapsed = (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="fixture_small", choices=["seed", "fixture_small", "tiny"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--train", action="store_true", help="time forward+backward (default: forward only)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()

    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = getattr(SuperResConfig, args.config)()
    model = SuperResUNet(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())

    print(f"SuperResUNet {args.config} ({n_params:,} parameters), {cfg.small_size}->{cfg.large_size}, "
          f"batch {args.batch}, {'forward+backward' if args.train else 'forward'}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'mode':<8} {'s/step':>9} {'frames/s':>9} {'peak GiB':>9}")
    for mode in modes:
        sec, peak = time_mode(model, mode, args.batch, device, args.train, args.warmup, args.iters)
        peak_s = f"{peak:9.2f}" if peak is not None else f"{'-':>9}"
        print(f"{mode:<8} {sec:9.4f} {args.batch / sec:9.2f} {peak_s}")
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
