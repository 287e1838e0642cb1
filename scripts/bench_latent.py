#!/usr/bin/env python
"""Throughput of the latent baseline: codec encoding (clips/s) and latent MM-UNet training (samples/s).

- encode: `LatentCodec.encode_video` + `encode_audio` on seeded random clips (16 frames at `--size` px,
  1.6 s at 16 kHz) in batches, after one warm-up batch; the decoding of shards that `avbench encode`
  also does is not included (it is the pixel loader's cost, see scripts/bench_train.py).
- train: one optimizer step = the training objective of `avbench train latent` (uniform t, MSE on both
  latents, the audio latent fitted to the model's length) forward + backward + AdamW, under the config's
  autocast, on seeded random latents of the model's shapes (the preset's: 16x4x32x32 and 20x50 → 48 for
  latent-sd-mmaudio16k-256), after `--warmup` steps. Peak GPU memory is reported on CUDA, and the
  training FLOPs per sample (forward + backward, torch's FLOP counter; the seed's 64 px pixel MM-UNet
  costs 4.46 TFLOP) for every device.

    python scripts/bench_latent.py --tiny                       # CPU smoke run, tiny codec and model
    python scripts/bench_latent.py --config latent-sd-mmaudio16k-256 --batch-size 4,16 --encode-batch 8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from avbench.errors import AvbenchError
from avbench.models.latent.codec import CodecPaths, load_codec
from avbench.models.mmunet import LatentMMUNetConfig, MMUNet
from avbench.train.config import TrainConfig, load_config
from avbench.train.objectives import make_objective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encode_rate(codec, size: int, batch: int, batches: int, device: torch.device) -> float:
    g = torch.Generator().manual_seed(0)
    video = (torch.rand(batch, 16, 3, size, size, generator=g) * 2 - 1).to(device)
    audio = (torch.rand(batch, 25600, generator=g) * 0.2 - 0.1).to(device)
    with torch.no_grad():
        codec.encode_video(video), codec.encode_audio(audio)  # warm-up (cuDNN autotuning, lazy init)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            codec.encode_video(video), codec.encode_audio(audio)
        _sync(device)
    return batch * batches / (time.perf_counter() - t0)


def model_config(cfg: TrainConfig) -> LatentMMUNetConfig:
    """The config's preset and overrides with the preset's own latent shapes (no shards needed)."""
    preset = getattr(LatentMMUNetConfig, cfg.model.preset)()
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides.items()}
    mc = replace(preset, **overrides)
    frames = mc.video_size[0]
    ta = frames * 3125 // 1000  # 31.25 latents/s at 10 fps: the MMAudio 16 kHz VAE's rate
    return mc.fitted(tuple(mc.video_size), (mc.audio_size[0], ta), codec=cfg.data.latents["vae"],
                     pixel_size=cfg.data.latents["size"])


def train_rate(cfg: TrainConfig, batch: int, steps: int, warmup: int, device: torch.device) -> dict:
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "batch_size": batch}})
    mc = model_config(cfg)
    torch.manual_seed(0)
    model = MMUNet(mc).to(device).train()
    if cfg.train.compile:
        model = torch.compile(model)
    objective = make_objective(cfg, mc, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, fused=device.type == "cuda" or None)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[cfg.train.precision]
    g = torch.Generator().manual_seed(1)
    batch_t = {"video": torch.randn(batch, *mc.video_size, generator=g).to(device),
               "audio": torch.randn(batch, mc.audio_size[0], mc.audio_latent_length, generator=g).to(device)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, _ = objective.loss(model, batch_t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    flops = objective.count_flops(model, amp) / 1e12
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    out = {"batch": batch, "samples_per_s": batch * steps / (time.perf_counter() - t0),
           "parameters": sum(p.numel() for p in model.parameters()), "tflop_per_sample": flops}
    if device.type == "cuda":
        out["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny codec and tiny-latent config (CPU smoke run)")
    p.add_argument("--config", default=None, help="latent training config (default: latent-sd-mmaudio16k-256)")
    p.add_argument("--codec", default=None, help="codec to time (default: the config's data.latents.vae)")
    p.add_argument("--size", type=int, default=None, help="clip size for encoding (default: the config's)")
    p.add_argument("--encode-batch", type=int, default=4)
    p.add_argument("--encode-batches", type=int, default=5)
    p.add_argument("--batch-size", default="4", help="comma-separated training batch sizes")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--video-vae", default=None)
    p.add_argument("--audio-vae", default=None)
    p.add_argument("--vocoder", default=None)
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", dest="sets", action="append", default=[], help="config override, e.g. train.compile=true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = load_config(args.config or ("tiny-latent" if args.tiny else "latent-sd-mmaudio16k-256"), args.sets)
    if device.type == "cpu" and cfg.train.precision != "fp32":
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "precision": "fp32"}})
    name = args.codec or cfg.data.latents["vae"]
    size = args.size or cfg.data.latents["size"]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"

    if not args.skip_encode:
        try:
            codec = load_codec(name, CodecPaths(args.video_vae, args.audio_vae, args.vocoder), device=device)
        except AvbenchError as e:
            print(f"encode: skipped, codec {name} unavailable:\n  " + "\n  ".join(str(e).splitlines()))
        else:
            rate = encode_rate(codec, size, args.encode_batch, args.encode_batches, device)
            print(f"| encode | codec | size | batch | clips/s | device |\n|---|---|---|---|---|---|\n"
                  f"| | {name} | {size} | {args.encode_batch} | {rate:.2f} | {dev_name} |")

    print("\n| train | config | batch | samples/s | TFLOP/sample | peak GB | parameters | precision | device |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for b in (int(x) for x in args.batch_size.split(",")):
        r = train_rate(cfg, b, args.steps, args.warmup, device)
        peak = f"{r['peak_gb']:.1f}" if "peak_gb" in r else "-"
        print(f"| | {args.config or ('tiny-latent' if args.tiny else 'latent-sd-mmaudio16k-256')} | {b} | "
              f"{r['samples_per_s']:.2f} | {r['tflop_per_sample']:.4g} | {peak} | {r['parameters']:,} | {cfg.train.precision} | {dev_name} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
