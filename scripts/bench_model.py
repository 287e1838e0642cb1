"""Benchmark a network: training-step throughput, peak memory, FLOPs, MFU and denoiser evaluations/s.

    python scripts/bench_model.py --model mmunet --device cuda --config seed          # the issue's table
    python scripts/bench_model.py --model mmunet --device cuda --config seed --compile model --checkpoint selective
    python scripts/bench_model.py --model superres --device cuda --config seed --batches 4,8 --checkpoint all
    python scripts/bench_model.py --model mmunet --device cpu --config tiny --batches 1,2 --eval-batch 2   # CPU smoke

`--model mmunet` is the coupled MM-UNet (video + audio), `--model superres` the 64→256 SR U-Net (one
frame per sample). A training step is forward + backward + AdamW step (MSE on every output), under bf16
autocast with fp32 weights unless `--dtype fp32`. FLOPs per sample come from torch's FlopCounterMode on
the meta device (model FLOPs: forward + backward, no recomputation), so MFU is comparable across
checkpointing choices; the peak it divides by is the training loop's table
(`avbench.train.throughput.PEAK_FLOPS`) unless `--peak-tflops` is given. Peak memory is
torch.cuda.max_memory_allocated (GPU only). For the seed MM-UNet on CUDA the table also shows the
original code's H100 numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from avbench.models.mmunet import MMUNet, MMUNetConfig
from avbench.models.superres import SuperResConfig, SuperResUNet
from avbench.train.throughput import count_training_flops, peak_flops

# The measurements of the original code on one H100 (seed config, fp16, forced checkpointing).
ORIGINAL_H100 = {"train": {4: (3.6, 19.4), 8: (6.3, None), 16: (8.9, 68.2), 32: (None, None)},
                 "evals_per_s_b32": 38.6, "tflop_per_sample": 4.46}
PRESETS = ("seed", "fixture_small", "tiny")
CHECKPOINTING = {"mmunet": ("none", "attention", "selective", "all"), "superres": ("none", "all")}


@dataclass
class Bench:
    """How to build one network and feed it. `build(checkpointing)` applies the --checkpoint policy
    only when asked (FLOP counting leaves recomputation out); `inputs(batch, device)` gives the forward's
    arguments."""

    name: str
    build: Callable[[bool], torch.nn.Module]
    inputs: Callable[[int, torch.device], tuple]


def _randn(g: torch.Generator, batch: int, shape, device) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=g).to(device)


def mmunet_bench(args) -> Bench:
    ckpt = {"none": False, "all": True, "attention": "attention", "selective": "selective"}[args.checkpoint]
    cl = {"auto": None, "on": True, "off": False}[args.channels_last]
    cfg: MMUNetConfig = getattr(MMUNetConfig, args.config)(attention_backend=args.backend, channels_last=cl)

    def inputs(batch, device):
        g = torch.Generator().manual_seed(0)
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        return _randn(g, batch, cfg.video_size, device), _randn(g, batch, cfg.audio_size, device), t

    return Bench("MM-UNet", lambda checkpointing: MMUNet(replace(cfg, use_checkpoint=ckpt if checkpointing else False)),
                 inputs)


def superres_bench(args) -> Bench:
    cfg: SuperResConfig = getattr(SuperResConfig, args.config)()

    def build(checkpointing):
        model = SuperResUNet(cfg)
        model.set_gradient_checkpointing(checkpointing and args.checkpoint == "all")
        return model

    def inputs(batch, device):
        g = torch.Generator().manual_seed(0)
        x = _randn(g, batch, (cfg.in_channels, cfg.large_size, cfg.large_size), device)
        low = _randn(g, batch, (cfg.in_channels, cfg.small_size, cfg.small_size), device)
        return x, torch.randint(0, 1000, (batch,), generator=g).to(device), low

    return Bench("SR U-Net", build, inputs)


def _outputs(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _loss(out) -> torch.Tensor:
    return sum(o.float().square().mean() for o in _outputs(out))


def flops_per_sample(bench: Bench) -> tuple[float, float]:
    """(training, forward) FLOPs for one sample, counted on the meta device (no memory, no time).
    Gradient checkpointing is off: recomputation is not useful work. (`count_training_flops` counts
    whatever its function runs, so it also counts the forward alone.)"""
    with torch.device("meta"):
        model = bench.build(False)
        args = bench.inputs(1, torch.device("meta"))
        train = count_training_flops(lambda: _loss(model(*args)).backward())
        model.eval()
        with torch.no_grad():
            fwd = count_training_flops(lambda: model(*args))
    return float(train), float(fwd)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def time_train(model, fn, bench, batch, device, dtype, warmup, iters):
    """(samples/s, peak GiB or None); raises torch.cuda.OutOfMemoryError when it does not fit."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    args = bench.inputs(batch, device)
    model.train()

    def step():
        with _autocast(device, dtype):
            out = fn(*args)
        _loss(out).backward()
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
    return batch / dt, peak


@torch.no_grad()
def time_eval(model, fn, bench, batch, device, dtype, warmup, iters):
    """Denoiser evaluations (one sample, one timestep) per second."""
    args = bench.inputs(batch, device)
    model.eval()
    for _ in range(warmup):
        with _autocast(device, dtype):
            fn(*args)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        with _autocast(device, dtype):
            fn(*args)
    _sync(device)
    return batch * iters / (time.perf_counter() - t0)


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=("mmunet", "superres"))
    p.add_argument("--config", default="seed", choices=PRESETS)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--batches", default="4,8,16,32", help="training batch sizes, comma separated")
    p.add_argument("--eval-batch", type=int, default=32, help="batch of the denoiser-evaluation timing; 0 skips it")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--checkpoint", default="none", choices=CHECKPOINTING["mmunet"],
                   help="gradient checkpointing policy (MM-UNet: none|attention|selective|all; SR: none|all)")
    p.add_argument("--compile", default="none", choices=("none", "model", "blocks"),
                   help="torch.compile the whole model, or each block (MM-UNet only: MMUNet.compile_blocks)")
    p.add_argument("--backend", default="sdpa", choices=("sdpa", "reference"), help="MM-UNet attention backend")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="MM-UNet channels_last_3d video activations (auto: on for CUDA)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak for MFU (default: avbench.train.throughput.PEAK_FLOPS by GPU name)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = p.parse_args()
    if args.checkpoint not in CHECKPOINTING[args.model]:
        p.error(f"--checkpoint {args.checkpoint} does not apply to --model {args.model}; "
                f"choose {'|'.join(CHECKPOINTING[args.model])}")
    if args.compile == "blocks" and args.model != "mmunet":
        p.error("--compile blocks applies to --model mmunet only")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    bench = mmunet_bench(args) if args.model == "mmunet" else superres_bench(args)
    train_flops, fwd_flops = flops_per_sample(bench)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device, args.dtype) or None

    torch.manual_seed(0)
    model = bench.build(True).to(device)
    fn = model
    if args.compile == "model":
        import torch._dynamo as dynamo  # `import torch._dynamo` would make `torch` local to main()

        # Graph breaks where window shifts are drawn leave each block kind compiled once per shape.
        dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 64)
        dynamo.config.accumulated_cache_size_limit = max(dynamo.config.accumulated_cache_size_limit, 512)
        fn = torch.compile(model)
    elif args.compile == "blocks":
        model.compile_blocks()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{bench.name} {args.config}: {n_params:,} parameters on {name}; dtype {args.dtype}, "
          f"checkpoint {args.checkpoint}, compile {args.compile}"
          + (f", backend {args.backend}, channels_last {args.channels_last}" if args.model == "mmunet" else ""))
    print(f"model FLOPs per sample: training {train_flops / 1e12:.3f} TFLOP, forward {fwd_flops / 1e12:.3f} TFLOP"
          + ("" if peak else "; MFU needs a known GPU or --peak-tflops"))
    compare = args.model == "mmunet" and args.config == "seed" and device.type == "cuda"
    header = f"{'batch':>5} {'samples/s':>10} {'peak GiB':>9} {'MFU %':>6}"
    if compare:
        header += f" {'orig s/s':>9} {'orig GiB':>9} {'speed-up':>8}"
    print(header)
    for b in [int(x) for x in args.batches.split(",") if x]:
        try:
            sps, mem = time_train(model, fn, bench, b, device, args.dtype, args.warmup, args.iters)
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            print(f"{b:>5} {'OOM':>10}")
            continue
        mfu = 100 * sps * train_flops / peak if peak else None
        row = f"{b:>5} {sps:>10.2f} {_fmt(mem):>9} {_fmt(mfu):>6}"
        if compare:
            o_sps, o_mem = ORIGINAL_H100["train"].get(b, (None, None))
            row += f" {_fmt(o_sps):>9} {_fmt(o_mem):>9} {_fmt(sps / o_sps if o_sps else None, '.2f'):>8}"
        print(row)
    model.zero_grad(set_to_none=True)
    if args.eval_batch:
        eps = time_eval(model, fn, bench, args.eval_batch, device, args.dtype, args.warmup, args.iters)
        line = f"denoiser evaluations/s at batch {args.eval_batch}: {eps:.1f}"
        if compare and args.eval_batch == 32:
            line += f" (original: {ORIGINAL_H100['evals_per_s_b32']}, speed-up {eps / ORIGINAL_H100['evals_per_s_b32']:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
