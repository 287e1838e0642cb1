"""Seconds per generated clip for each stage of `avbench sample text2av`, and peak memory.

Stages: CogVideoX (text → frames), MMAudio features (CLIP + Synchformer frames, text), MMAudio flow (the
Euler steps, both CFG branches), MMAudio decode + vocoder, conversion to the benchmark format (10 fps,
square crop, 16 kHz) and writing the four files. It runs the real `run_text2av` loop; the MMAudio
sub-stages are timed by wrapping the bundle's network, VAE decoder and vocoder (on CUDA each timing
synchronises first). Peak memory: on CUDA `torch.cuda.max_memory_allocated` within each stage; on the CPU
the process's peak RSS so far (it only grows).

    python scripts/bench_text2av.py --tiny                       # toy models on the CPU (what CI can run)
    python scripts/bench_text2av.py --device cuda --weights-dir W --vocoder-weights V [--offload]

--tiny writes a toy CogVideoX and the test-only MMAudio variant `tiny-16k` (avbench.sample.tiny, seeded
random weights, the same writers the tests use) into a temporary folder; its numbers say nothing about
the real models, only that every stage runs and is accounted for.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from avbench.compute import PRECISIONS
from avbench.errors import AvbenchError
from avbench.paths import REPO_ROOT
from avbench.sample import cogvideox, tiny
from avbench.sample.text2av import Text2AVConfig, load_models, read_prompts, run_text2av

STAGES = ("cogvideox", "mmaudio features", "mmaudio flow", "mmaudio decode+vocoder", "convert", "write")
TINY_PROMPTS = ("a crowd at the concert", "the tank fires in the desert")


class StageClock:
    """Seconds and peak memory per stage, summed over clips."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak: dict[str, float] = defaultdict(float)  # GiB
        self.depth = 0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _memory(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self._sync()
        if self.cuda and self.depth == 0:
            torch.cuda.reset_peak_memory_stats()
        self.depth += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[stage] += time.perf_counter() - t0
            self.peak[stage] = max(self.peak[stage], self._memory())
            self.depth -= 1

    def wrap(self, obj, method: str, stage: str) -> None:
        """Time every call of obj.method as `stage` (an instance attribute shadows the class's method)."""
        inner = getattr(obj, method)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            with self(stage):
                return inner(*args, **kwargs)

        setattr(obj, method, timed)


def _instrument(clock: StageClock, bundle) -> None:
    clock.wrap(bundle.network, "predict_flow", "mmaudio flow")
    clock.wrap(bundle.vae, "decode", "mmaudio decode+vocoder")
    clock.wrap(bundle.vocoder, "forward", "mmaudio decode+vocoder")


def table(clock: StageClock, clips: int, load_s: float, device: str) -> list[str]:
    sec = dict(clock.seconds)
    # the features are what generate_audio spends outside the flow steps and the decoder
    sec["mmaudio features"] = sec.pop("mmaudio", 0.0) - sec.get("mmaudio flow", 0.0) - sec.get(
        "mmaudio decode+vocoder", 0.0)
    mem = "peak GiB allocated (CUDA)" if clock.cuda else "peak RSS GiB so far (process)"
    rows = [f"| stage | s per clip ({clips} clips, {device}) | share | {mem} |", "|---|---|---|---|"]
    total = sum(sec.get(s, 0.0) for s in STAGES)
    for s in STAGES:
        peak = clock.peak.get("mmaudio" if s == "mmaudio features" else s, 0.0)
        share = sec.get(s, 0.0) / total if total else 0.0
        rows.append(f"| {s} | {sec.get(s, 0.0) / clips:.3f} | {share:.0%} | {peak:.2f} |")
    rows.append(f"| total | {total / clips:.3f} | 100% | {max(clock.peak.values(), default=0.0):.2f} |")
    rows.append(f"| load (once) | {load_s:.3f} | | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tiny", action="store_true", help="toy CogVideoX + test-only tiny-16k MMAudio on the CPU")
    ap.add_argument("--prompts", type=Path, default=REPO_ROOT / "manifests" / "prompts" / "concerts.txt")
    ap.add_argument("--clips", type=int, default=2, help="clips to generate (the first prompts of the list)")
    ap.add_argument("--video-model", default=cogvideox.DEFAULT_MODEL)
    ap.add_argument("--audio-model", default="mmaudio-large-44k-v2")
    ap.add_argument("--weights-dir", type=Path)
    ap.add_argument("--vocoder-weights", type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=tuple(PRECISIONS), help="CogVideoX precision")
    ap.add_argument("--audio-dtype", choices=tuple(PRECISIONS), help="MMAudio precision")
    ap.add_argument("--offload", action="store_true")
    ap.add_argument("--vae-tiling", action="store_true")
    ap.add_argument("--size", type=int, default=256, choices=(64, 256))
    ap.add_argument("--out", type=Path, help="keep the samples here (default: a temporary folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_text2av_") as tmp:
        tmp = Path(tmp)
        prompts = tmp / "prompts.txt"
        if args.tiny:
            torch.set_num_threads(1)
            tiny.write_tiny_pipeline(tmp / "cogvideox")
            tiny.write_tiny_mmaudio(tmp / "mmaudio")
            prompts.write_text("\n".join(TINY_PROMPTS[: args.clips]) + "\n", encoding="utf-8")
            cfg = Text2AVConfig(prompts=prompts, out=args.out or tmp / "out", video_model=str(tmp / "cogvideox"),
                                frames=tiny.TINY_FRAMES, video_steps=2, audio_model="tiny-16k",
                                weights_dir=tmp / "mmaudio", audio_steps=2, size=64, device="cpu", progress=False)
        else:
            prompts.write_text("\n".join(read_prompts(args.prompts)[: args.clips]) + "\n", encoding="utf-8")
            cfg = Text2AVConfig(prompts=prompts, out=args.out or tmp / "out", video_model=args.video_model,
                                dtype=args.dtype, audio_dtype=args.audio_dtype, offload=args.offload, vae_tiling=args.vae_tiling,
                                audio_model=args.audio_model, weights_dir=args.weights_dir,
                                vocoder_weights=args.vocoder_weights, size=args.size, device=args.device,
                                progress=False)
        clock = StageClock(cfg.device)
        t0 = time.perf_counter()
        models = load_models(cfg)
        load_s = time.perf_counter() - t0
        _instrument(clock, models.audio)
        doc = run_text2av(cfg, models=models, timer=clock)
        clips = len(doc["samples"])
        print(f"text2av: {models.video.info['id']} ({cfg.resolved_dtype()}) → {models.audio_info['name']} "
              f"({cfg.resolved_audio_dtype()}), {cfg.frames} frames, {cfg.video_steps} + {cfg.audio_steps} steps")
        print("\n".join(table(clock, clips, load_s, cfg.device)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AvbenchError as e:  # a missing model or weight: its one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
