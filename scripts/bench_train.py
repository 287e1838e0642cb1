#!/usr/bin/env python
"""End-to-end training throughput on real shards: loader + model + optimizer, per GPU (per process).

For each DataLoader worker count it runs the real training loop (`avbench.train.loop.train`) for
`--warmup + --steps` optimizer steps and reads the logged window after the warm-up: training samples/s,
the fraction of step time spent waiting for the next batch, peak GPU memory and MFU (GPU only). It also
measures the loader alone (windows/s with the same workers), i.e. the most the loader could feed.
The GPU counts as fed when the data-wait fraction stays under 5%.

    # the demo dataset (CPU, tiny model): works anywhere
    avbench build demo --root data/demo
    python scripts/bench_train.py --data data/demo --config tiny --workers 0,2 --steps 10

    # one GPU, the seed configuration at 64 px, up to 8 workers
    python scripts/bench_train.py --data data/concerts --config mmdiffusion-64 --workers 2,4,8 \\
        --batch-size 16 --set train.compile=true
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from avbench.data.windows import WindowConfig, make_loader
from avbench.train.config import TrainConfig, load_config
from avbench.train.logging import read_log
from avbench.train.loop import train


def loader_rate(cfg, batches: int) -> float:
    """Windows/s of the shard loader alone, after its first batch (worker start-up excluded)."""
    wcfg = WindowConfig(size=cfg.data.size, split=cfg.data.split, frames=cfg.data.frames, seed=cfg.train.seed)
    loader = make_loader(cfg.data.shards, wcfg, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers,
                         batches_per_epoch=batches + 1, rank=0, world_size=1)
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += batch["video"].shape[0]
    return n / (time.perf_counter() - t0)


def train_rate(cfg, steps: int, warmup: int) -> dict:
    d = cfg.to_dict()
    d["train"]["max_steps"] = warmup + steps
    d["log"].update(every=1, preview_every=0, tensorboard=False)
    d["checkpoint"].update(every=10**9)
    cfg = TrainConfig.from_dict(d)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as run:
        train(cfg, run, resume="none", console=False)
        rows = [r for r in read_log(Path(run)) if r["step"] > warmup]
    busy = sum(cfg.data.batch_size * cfg.optim.grad_accum / r["samples_per_s"] for r in rows)
    waited = sum(r["data_wait_frac"] * cfg.data.batch_size * cfg.optim.grad_accum / r["samples_per_s"] for r in rows)
    out = {"samples_per_s": len(rows) * cfg.data.batch_size * cfg.optim.grad_accum / busy,
           "data_wait_frac": waited / busy}
    for key in ("gpu_mem_gb", "mfu", "tflop_per_sample"):
        if key in rows[-1]:
            out[key] = max(r.get(key, 0.0) for r in rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset root with shards/index.json (avbench build)")
    ap.add_argument("--config", default="tiny", help="training config name or .toml (default: tiny)")
    ap.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts to try")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=10, help="measured optimizer steps")
    ap.add_argument("--warmup", type=int, default=3, help="steps excluded from the measurement")
    ap.add_argument("--loader-batches", type=int, default=20)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override, e.g. train.compile=true")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()

    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        sets = [f"data.shards={json.dumps(str(args.data))}", f"data.workers={workers}", *args.sets]
        if args.batch_size:
            sets.append(f"data.batch_size={args.batch_size}")
        cfg = load_config(args.config, sets)
        row = {"config": args.config, "batch": cfg.data.batch_size, "workers": workers,
               "loader_windows_per_s": loader_rate(cfg, args.loader_batches)}
        row.update(train_rate(cfg, args.steps, args.warmup))
        row["fed"] = row["data_wait_frac"] < 0.05
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\ntraining throughput per process on {device}, {args.steps} steps after {args.warmup} warm-up steps")
    head = ["config", "batch", "workers", "loader win/s", "train samples/s", "data wait", "fed", "GPU GB", "MFU"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(" | ".join([
            r["config"], str(r["batch"]), str(r["workers"]), f"{r['loader_windows_per_s']:.1f}",
            f"{r['samples_per_s']:.2f}", f"{100 * r['data_wait_frac']:.1f}%", "yes" if r["fed"] else "no",
            f"{r['gpu_mem_gb']:.1f}" if "gpu_mem_gb" in r else "-", f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-",
        ]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
