#!/usr/bin/env python
"""Reconstruction floor of the latent codecs: encode → decode the clips of a split, then score.

For each codec (VAE pair) it passes every clip of `ROOT:split` (fixed windows from frame 0, as `avbench
eval`'s avbench protocol scores them) through encode and decode, and reports

- PSNR of the frames (uint8, peak 255, per clip over all its frames; mean and min over clips);
- FVD (I3D, tf profile) and FAD (VGGish) of the reconstructions against the originals (`avbench eval`
  with reference `ROOT:split:size`): the best a latent model using that codec could score.

A latent model can only be judged against this floor. With the real weights (diffusers' HF cache or
the local-path options; MMAudio files through the avbench weights registry) it measures the released
codecs; a missing part is listed (name, licence, flag) and the script exits 2. `--tiny` runs the tiny
random test codecs instead (a smoke run: the numbers mean nothing; VGGish weights are then seeded
random ones unless --vggish-weights is given).

    python scripts/latent_recon.py data/concerts --size 256
    python scripts/latent_recon.py data/demo --size 64 --tiny --out /tmp/recon.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from avbench import weights
from avbench.data.windows import WindowConfig, make_loader
from avbench.errors import AvbenchError
from avbench.media import to_pcm, to_uint8_frames, write_mp4, write_wav
from avbench.metrics.evaluate import EvalConfig, run_eval
from avbench.models.latent.codec import CODECS, CodecPaths, load_codec

FPS, SR = 10, 16000
REAL = ("sd-mmaudio16k", "sd-audioldm2")
TINY = ("tiny", "tiny-audioldm2")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 arrays; inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def clips(root: Path, size: int, split: str, frames: int, limit: int | None, batch: int):
    loader = make_loader(root, WindowConfig(size=size, split=split, frames=frames, mode="eval"), batch_size=batch)
    seen = 0
    for b in loader:
        take = b["video"].shape[0] if limit is None else min(b["video"].shape[0], limit - seen)
        if take <= 0:
            return
        yield b["video"][:take], b["audio"][:take, 0]
        seen += take


def reconstruct(codec, root: Path, args, out: Path) -> dict:
    """Encode → decode every clip into `out` (the `avbench sample` layout); PSNR per clip."""
    scores, n = [], 0
    for video, audio in clips(root, args.size, args.split, args.frames, args.max_clips, args.batch_size):
        video, audio = video.to(args.device), audio.to(args.device)
        rec_v = codec.decode_video(codec.encode_video(video)).clamp(-1, 1)
        rec_a = codec.decode_audio(codec.encode_audio(audio))[..., :audio.shape[-1]]
        for b in range(video.shape[0]):
            orig, rec = to_uint8_frames(video[b]), to_uint8_frames(rec_v[b])
            scores.append(psnr(orig, rec))
            pcm = to_pcm(rec_a[b])
            write_wav(out / "audio" / f"{n}.wav", pcm, SR)
            write_mp4(out / "video" / f"{n}.mp4", rec, pcm, FPS, SR)
            n += 1
    if not n:
        raise SystemExit(f"{root}: no {args.frames}-frame clips in split {args.split!r} at {args.size} px")
    return {"clips": n, "psnr_mean": float(np.mean(scores)), "psnr_min": float(np.min(scores))}


def metric_weights(args) -> tuple[dict, list[str]]:
    """EvalConfig weight settings, and the lines for the weights that are missing."""
    missing, kw = [], {}
    for name, flag in (("i3d", "i3d_weights"), ("vggish", "vggish_weights")):
        try:
            kw[flag] = str(weights.resolve(name, getattr(args, flag))[0])
        except AvbenchError as e:
            if name == "vggish" and args.tiny:
                kw["allow_random_vggish"] = True
            else:
                missing.append(" ".join(str(e).split()))
    return kw, missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="dataset root built by `avbench build`")
    p.add_argument("--size", type=int, default=256, help="frame size of the shards to reconstruct")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--codecs", default=None, help=f"comma-separated (default: {','.join(REAL)}; --tiny: {','.join(TINY)})")
    p.add_argument("--tiny", action="store_true", help="tiny random test codecs (smoke run; numbers meaningless)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--video-vae", default=None, help="local diffusers AutoencoderKL folder for the SD VAE")
    p.add_argument("--audio-vae", default=None, help="local audio VAE (MMAudio v1-16.pth / AudioLDM 2 folder)")
    p.add_argument("--vocoder", default=None, help="local vocoder (MMAudio best_netG.pt / SpeechT5HifiGan folder)")
    p.add_argument("--i3d-weights", default=None)
    p.add_argument("--vggish-weights", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    names = args.codecs.split(",") if args.codecs else list(TINY if args.tiny else REAL)
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        p.error(f"unknown codec {unknown[0]!r}; choose from {', '.join(CODECS)}")
    paths = CodecPaths(args.video_vae, args.audio_vae, args.vocoder)
    codecs, missing = {}, []
    for name in names:
        try:
            codecs[name] = load_codec(name, paths, device=args.device)
        except AvbenchError as e:
            missing.extend(str(e).splitlines())
    eval_kw, metric_missing = metric_weights(args)
    missing += metric_missing
    if missing:
        print("missing weights, nothing measured:", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        return 2

    rows = []
    with tempfile.TemporaryDirectory(prefix="latent-recon-") as tmp:
        for name, codec in codecs.items():
            out = Path(tmp) / name
            with torch.no_grad():
                row = {"codec": name, **reconstruct(codec, args.root, args, out)}
            record, _ = run_eval(EvalConfig(
                samples=str(out), reference=f"{args.root}:{args.split}:{args.size}", fvd=True, fad=True,
                allow_small=True, num_clips=row["clips"], workers=0, device=args.device, use_cache=False,
                results_dir=str(Path(tmp) / "results"), name=name, **eval_kw))
            row["fvd"], row["fad"] = record["scores"].get("fvd"), record["scores"].get("fad")
            row["eval_warnings"] = record["warnings"]
            row["codec_describe"] = codec.describe(FPS)
            rows.append(row)

    print(f"{'codec':<16} {'clips':>5} {'PSNR dB':>8} {'min':>6} {'FVD':>9} {'FAD':>9}   ({args.root}:{args.split}:"
          f"{args.size}{', tiny random codecs' if args.tiny else ''})")
    for r in rows:
        print(f"{r['codec']:<16} {r['clips']:>5} {r['psnr_mean']:>8.2f} {r['psnr_min']:>6.2f} "
              f"{_fmt(r['fvd'])} {_fmt(r['fad'])}")
    if args.out:
        args.out.write_text(json.dumps({"root": str(args.root), "split": args.split, "size": args.size,
                                        "tiny": args.tiny, "rows": rows}, indent=2, default=str))
    return 0


def _fmt(v) -> str:
    return f"{v:>9.3f}" if isinstance(v, (int, float)) else f"{'-':>9}"


if __name__ == "__main__":
    raise SystemExit(main())
