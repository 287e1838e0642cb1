"""Benchmark the coupled MM-UNet: training-step throughput, memory, FLOPs, MFU, denoiser evals/s.

    python scripts/bench_model.py --device cuda --config seed                 # the issue's table
    python scripts/bench_model.py --device cuda --config seed --compile model --checkpoint selective
    python scripts/bench_model.py --device cpu --config tiny --batches 1,2 --eval-batch 2   # CPU smoke

A training step is forward + backward + AdamW step (uniform t, MSE on both modalities), under bf16
autocast with fp32 weights unless `--dtype fp32`. FLOPs per sample come from torch's
FlopCounterMode on the meta device (model FLOPs: forward + backward, no recomputation), so MFU is
comparable across checkpointing choices. Peak memory is torch.cuda.max_memory_allocated (GPU only).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import replace

import torch

from avbench.models import MMUNet, MMUNetConfig

# The measurements of the original code on one H100 (seed config, fp16, forced checkpointing).
ORIGINAL_H100 = {"train": {4: (3.6, 19.4), 8: (6.3, None), 16: (8.9, 68.2), 32: (None, None)},
                 "evals_per_s_b32": 38.6, "tflop_per_sample": 4.46}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def build_config(name: str, args) -> MMUNetConfig:
    presets = {"seed": MMUNetConfig.seed, "fixture_small": MMUNetConfig.fixture_small, "tiny": MMUNetConfig.tiny}
    ckpt = {"none": False, "all": True, "attention": "attention", "selective": "selective"}[args.checkpoint]
    cl = {"auto": None, "on": True, "off": False}[args.channels_last]
    return presets[name](attention_backend=args.backend, use_checkpoint=ckpt, channels_last=cl)


def flops_per_sample(cfg: MMUNetConfig) -> tuple[float, float]:
    """(training, forward) FLOPs for one sample, counted on the meta device (no memory, no time)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = replace(cfg, use_checkpoint=False)  # model FLOPs: recomputation is not useful work
    with torch.device("meta"):
        model = MMUNet(cfg)
        v, a = torch.randn(1, *cfg.video_size), torch.randn(1, *cfg.audio_size)
        t = torch.zeros(1, dtype=torch.long)
        with FlopCounterMode(display=False) as fc:
            vo, ao = model(v, a, t)
            (vo.float().square().mean() + ao.float().square().mean()).backward()
        train = fc.get_total_flops()
        model.eval()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(v, a, t)
        return float(train), float(fc.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(cfg: MMUNetConfig, batch: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(batch, *cfg.video_size, generator=g).to(device)
    a = torch.randn(batch, *cfg.audio_size, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    return v, a, t


def _autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_train(model, fn, cfg, batch, device, dtype, warmup, iters):
    """(samples/s, peak GiB or None); raises torch.cuda.OutOfMemoryError when it does not fit."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    v, a, t = _inputs(cfg, batch, device)
    model.train()

    def step():
        with _autocast(device, dtype):
            vo, ao = fn(v, a, t)
        loss = (vo.float() - v).square().mean() + (ao.float() - a).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del opt
    return batch / dt, peak


@torch.no_grad()
def time_eval(model, fn, cfg, batch, device, dtype, warmup, iters):
    """Denoiser evaluations (one sample, one timestep) per second."""
    v, a, t = _inputs(cfg, batch, device)
    model.eval()
    for _ in range(warmup):
        with _autocast(device, dtype):
            fn(v, a, t)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        with _autocast(device, dtype):
            fn(v, a, t)
    _sync(device)
    return batch * iters / (time.perf_counter() - t0)


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="seed", choices=("seed", "fixture_small", "tiny"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--batches", default="4,8,16,32", help="training batch sizes, comma separated")
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--backend", default="sdpa", choices=("sdpa", "reference"))
    p.add_argument("--checkpoint", default="none", choices=("none", "attention", "selective", "all"),
                   help="gradient checkpointing policy (MMUNetConfig.use_checkpoint)")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="channels_last_3d video activations (auto: on for CUDA)")
    p.add_argument("--compile", default="none", choices=("none", "model", "blocks"),
                   help="torch.compile the whole model, or each block (MMUNet.compile_blocks)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by GPU name)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    cfg = build_config(args.config, args)
    train_flops, fwd_flops = flops_per_sample(cfg)
    peak = args.peak_tflops
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if peak is None and device.type == "cuda":
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)

    torch.manual_seed(0)
    model = MMUNet(cfg).to(device)
    fn = model
    if args.compile == "model":
        import torch._dynamo as dynamo  # `import torch._dynamo` would make `torch` local to main()

        # Graph breaks where window shifts are drawn leave each block kind compiled once per shape.
        dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 64)
        dynamo.config.accumulated_cache_size_limit = max(dynamo.config.accumulated_cache_size_limit, 512)
        fn = torch.compile(model)
    elif args.compile == "blocks":
        model.compile_blocks()
    print(f"MM-UNet {args.config}: {model.num_parameters():,} parameters on {name}; dtype {args.dtype}, "
          f"backend {args.backend}, checkpoint {args.checkpoint}, channels_last {args.channels_last}, "
          f"compile {args.compile}")
    print(f"model FLOPs per sample: training {train_flops / 1e12:.3f} TFLOP, forward {fwd_flops / 1e12:.3f} TFLOP")
    compare = args.config == "seed" and device.type == "cuda"
    header = f"{'batch':>5} {'samples/s':>10} {'peak GiB':>9} {'MFU %':>6}"
    if compare:
        header += f" {'orig s/s':>9} {'orig GiB':>9} {'speed-up':>8}"
    print(header)
    for b in [int(x) for x in args.batches.split(",") if x]:
        try:
            sps, mem = time_train(model, fn, cfg, b, device, args.dtype, args.warmup, args.iters)
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            print(f"{b:>5} {'OOM':>10}")
            continue
        mfu = 100 * sps * train_flops / (peak * 1e12) if peak else None
        row = f"{b:>5} {sps:>10.2f} {_fmt(mem):>9} {_fmt(mfu):>6}"
        if compare:
            o_sps, o_mem = ORIGINAL_H100["train"].get(b, (None, None))
            row += f" {_fmt(o_sps):>9} {_fmt(o_mem):>9} {_fmt(sps / o_sps if o_sps else None, '.2f'):>8}"
        print(row)
    model.zero_grad(set_to_none=True)
    if args.eval_batch:
        eps = time_eval(model, fn, cfg, args.eval_batch, device, args.dtype, args.warmup, args.iters)
        line = f"denoiser evaluations/s at batch {args.eval_batch}: {eps:.1f}"
        if compare and args.eval_batch == 32:
            line += f" (original: {ORIGINAL_H100['evals_per_s_b32']}, speed-up {eps / ORIGINAL_H100['evals_per_s_b32']:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
