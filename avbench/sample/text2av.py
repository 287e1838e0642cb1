"""`avbench sample text2av`: the two-step baseline, CogVideoX (text → video) then MMAudio (video + text →
audio), written both as generated and in the benchmark's format.

Layout of OUT:
    native/video/<i>.mp4   the generated frames at their own size and rate (8 fps) with the model-rate
                           audio (44.1 kHz for the 44k variants, 16 kHz for 16k) as AAC
    native/audio/<i>.wav   that audio, 16-bit PCM at the model's rate
    video/<i>.mp4          benchmark: 10 fps (curation's sample-and-hold rule), --size px square (curation's
                           centre crop and scaler), 16 kHz AAC
    audio/<i>.wav          benchmark: 16 kHz mono 16-bit PCM (soxr, curation's quality)
    samples.json           the `avbench sample` document: settings, both models' ids and checksums, and per
                           sample its prompt, seed and files; rewritten after every sample
Sample i is prompt i mod P (P prompts) in repetition i div P with seed `seed + i`, so a larger
--num-samples extends a finished run; a rerun with the same settings resumes.

Audio duration: MMAudio gets the video's own duration (49 frames at 8 fps = 6.125 s). The original script
asked for 8 s, but its video loader cuts the duration to the clip's length when the clip is shorter, so it
ran at the video's length too; asking for more would make audio with no frames under it.

Options: CogVideoX's are this module's; the MMAudio ones (`--audio-model`, weight files, `--audio-steps`,
`--cfg-strength`, `--negative-prompt`, `--audio-dtype`, `--device`) are `MMAudioOptions`, shared with
`avbench sample v2a`. Precisions are spelled fp32 | bf16 | fp16 for both models (`--dtype`, `--audio-dtype`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avbench.compute import resolve_precision
from avbench.curate.audiotrack import SOXR_QUALITY
from avbench.curate.hold import hold_indices, uniform_times
from avbench.curate.pictures import SCALER, Shrinker
from avbench.errors import MissingInputError, SampleError
from avbench.io import atomic_write_json, sha256_bytes
from avbench.sample import cogvideox
from avbench.sample.mmaudio import (
    METRICS_RATE,
    MMAudioOptions,
    audio_model_field,
    generate_audio,
    parse_precision,
    resample_audio,
    write_clip,
)
from avbench.sample.pipeline import document_head, load_previous

BENCH_FPS = 10
BENCH_RATE = METRICS_RATE
SIZES = (64, 256)
RESIZE = "center-crop"  # curation's default square mode
# they do not change the files, or (paths) are replaced by the content's checksums
_NOT_IDENTITY = ("out", "num_samples", "progress", "offload", "prompts", "video_model", "hf_cache")


@dataclass(kw_only=True)
class Text2AVConfig(MMAudioOptions):
    """`avbench sample text2av`: CogVideoX's options, then the MMAudio options (inherited, shared with v2a)."""

    # metadata["help"] is the help of the generated `avbench sample text2av` option
    prompts: Path = field(metadata={"help": "Text file, one prompt per line; blank lines and lines starting "
                                            "with # are skipped (see manifests/prompts/)."})
    out: Path = field(metadata={"help": "Output folder: native/ (as generated), video/ audio/ samples.json "
                                        "(benchmark format)."})
    video_model: str = field(default=cogvideox.DEFAULT_MODEL, metadata={
        "help": "CogVideoX: a Hugging Face hub id (fetched into the HF cache; CogVideoX-2B is Apache-2.0, 5B/1.5 "
                "under the CogVideoX licence) or a local diffusers folder."})
    hf_cache: Path | None = field(default=None, metadata={
        "help": "Hugging Face cache folder for hub models. Default: the hub's own ($HF_HOME/hub)."})
    dtype: str | None = field(default=None, metadata={
        "help": "CogVideoX precision: fp32 | bf16 | fp16. Default: fp16 on CUDA (the original's), fp32 on CPU."})
    offload: bool = field(default=False, metadata={
        "help": "Keep CogVideoX's parts on the CPU and move each to the GPU while it runs (small GPUs)."})
    vae_tiling: bool = field(default=False, metadata={
        "help": "Decode CogVideoX's video in tiles (less GPU memory; pixels differ slightly at tile seams)."})
    frames: int = field(default=cogvideox.DEFAULT_FRAMES, metadata={
        "help": "Frames per video: 8N+1 (the VAE packs 4 frames per latent after the first and decodes latents in pairs).",
        "min": 1})
    video_fps: int = field(default=cogvideox.DEFAULT_FPS, metadata={
        "help": "Frame rate the video is generated for (CogVideoX-2B/5B: 8; 1.5: 16).", "min": 1})
    height: int | None = field(default=None, metadata={"help": "Generated height. Default: the model's (480)."})
    width: int | None = field(default=None, metadata={"help": "Generated width. Default: the model's (720)."})
    video_steps: int = field(default=cogvideox.DEFAULT_STEPS, metadata={"help": "CogVideoX sampling steps.",
                                                                         "min": 1})
    guidance: float = field(default=cogvideox.DEFAULT_GUIDANCE, metadata={"help": "CogVideoX guidance scale."})
    dynamic_cfg: bool = field(default=True, metadata={
        "help": "CogVideoX's dynamic CFG (guidance ramped over the steps), as the original script."})
    audio_model: str = audio_model_field("mmaudio-large-44k-v2", "as the original script")
    duration: float | None = field(default=None, metadata={
        "help": "Seconds of audio. Default: the video's duration (frames / video fps)."})
    size: int = field(default=64, metadata={"help": "Benchmark frame size: 64 or 256 (square, centre crop)."})
    seed: int = field(default=0, metadata={"help": "Sample i uses seed + i (video and audio)."})
    num_samples: int = field(default=1, metadata={"help": "Samples per prompt.", "min": 1})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def resolved_dtype(self) -> str:
        return resolve_precision(self.dtype, self.device, on_cuda="fp16")  # the original script's

    def audio_duration(self) -> float:
        return self.duration if self.duration is not None else self.frames / self.video_fps

    def validate(self) -> None:
        super().validate()
        cogvideox.check_num_frames(self.frames)
        parse_precision(self.resolved_dtype(), "--dtype")
        if self.size not in SIZES:
            raise SampleError(f"--size {self.size}: the benchmark's sizes are {' and '.join(map(str, SIZES))}")
        if self.audio_duration() <= 0:
            raise SampleError(f"--duration {self.duration}: must be positive")


def read_prompts(path: Path) -> list[str]:
    """The prompts of a prompt list, in order."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--prompts {path}: no such file; give a text file with one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SampleError(f"{path}: not UTF-8 text; save the prompt list as UTF-8") from None
    prompts = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not prompts:
        raise SampleError(f"{path}: no prompts (every line is blank or a # comment); add one prompt per line")
    return prompts


def benchmark_frame_count(frames: int, fps_in: float, fps_out: float = BENCH_FPS) -> int:
    """Output frames whose whole interval [k/fps_out, (k+1)/fps_out) lies within the source's duration."""
    return math.floor(frames / fps_in * fps_out + 1e-6)


def to_benchmark_video(frames: np.ndarray, fps_in: float, size: int, fps_out: float = BENCH_FPS) -> np.ndarray:
    """uint8 [F, H, W, 3] at `fps_in` → [F', size, size, 3] at `fps_out`: curation's sample-and-hold
    frame choice and its square crop + scaler, applied to each source frame once."""
    import av

    n_out = benchmark_frame_count(len(frames), fps_in, fps_out)
    picks = hold_indices(uniform_times(len(frames), fps_in), fps_out, n_out)
    shrink = Shrinker(size, RESIZE)
    small = {j: shrink(av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[j]), format="rgb24"), 0)
             for j in sorted(set(picks))}
    return np.stack([small[j] for j in picks])


def to_benchmark_audio(wave: np.ndarray, rate: int, frames_out: int, fps_out: float = BENCH_FPS,
                       rate_out: int = BENCH_RATE) -> tuple[np.ndarray, int]:
    """Mono float audio at `rate` → exactly `frames_out` frames' worth at `rate_out` (soxr at curation's
    quality); returns it and how many samples were zero-padded at the end (0 when the audio was long enough)."""
    return resample_audio(wave, rate, round(frames_out * rate_out / fps_out), rate_out)


def _identity(cfg: Text2AVConfig, prompts: list[str], video_info: dict, bundle) -> dict[str, Any]:
    d = cfg.identity(bundle, skip=_NOT_IDENTITY)
    d["dtype"] = cfg.resolved_dtype()
    d["prompts_sha256"] = sha256_bytes("\n".join(prompts).encode())
    d["video_model"] = {"id": video_info["id"] if video_info["source"] == "hub" else None,
                        "sha256_tree": video_info["sha256_tree"]}
    return d


def _load_previous(out: Path, identity: dict[str, Any]) -> dict[int, dict]:
    """`avbench sample`'s resume rule (same identity, files present), plus the native files."""
    rows = load_previous(out, identity)
    return {i: r for i, r in rows.items() if all((out / r[k]).is_file() for k in ("native_video", "native_audio"))}


def _document(cfg, identity, models, frames_out, rows, notes, complete) -> dict[str, Any]:
    return {
        **document_head("text2av", identity, {**cfg.to_dict(), "dtype": cfg.resolved_dtype(),
                                               "audio_dtype": cfg.resolved_audio_dtype()}, complete),
        "video_model": models.video.info,
        "audio_model": models.audio_info,
        "audio_sampler": cfg.sampler_record(),
        "video": {"fps": BENCH_FPS, "fps_in": cfg.video_fps, "frames": frames_out, "frames_in": cfg.frames,
                  "height": cfg.size, "width": cfg.size, "codec": "h264+aac", "resize": RESIZE, "scaler": SCALER,
                  "resample": "sample-and-hold (avbench.curate.hold)",
                  "windows": "whole clips are kept; avbench eval takes 16-frame windows from them"},
        "audio": {"sample_rate": BENCH_RATE, "samples": frames_out * BENCH_RATE // BENCH_FPS,
                  "format": "wav pcm16", "resampler": f"soxr {SOXR_QUALITY}",
                  "rate_in": models.audio.sample_rate, "duration_s": cfg.audio_duration()},
        "native": {"fps": cfg.video_fps, "frames": cfg.frames, "sample_rate": models.audio.sample_rate,
                   "codec": "h264+aac", "audio_format": "wav pcm16"},
        "notes": notes,
        "samples": [rows[i] for i in sorted(rows)],
    }


@dataclass
class Models:
    """Both halves, loaded once: CogVideoX and the MMAudio bundle."""

    video: cogvideox.VideoModel
    audio: Any  # avbench.sample.mmaudio.MMAudioBundle
    audio_info: dict[str, Any]


def load_models(cfg: Text2AVConfig) -> Models:
    cfg.validate()
    # MMAudio first (it checks the device): a missing weight file is reported before CogVideoX's
    # multi-gigabyte download and load
    bundle = cfg.load_mmaudio()
    video = cogvideox.load_cogvideox(cfg.video_model, dtype=cfg.resolved_dtype(), device=cfg.device,
                                     offload=cfg.offload, vae_tiling=cfg.vae_tiling, cache_dir=cfg.hf_cache)
    return Models(video, bundle, bundle.describe())


def write_sample(out: Path, i: int, frames: np.ndarray, wave: np.ndarray, rate: int, fps: int,
                 small: np.ndarray, wave16: np.ndarray) -> dict[str, str]:
    """The four files of sample i (native mp4 + wav, benchmark mp4 + wav); returns their paths under `out`."""
    native = write_clip(out, i, frames, wave, fps, rate, prefix="native/")
    return {**write_clip(out, i, small, wave16, BENCH_FPS, BENCH_RATE), **{f"native_{k}": v for k, v in native.items()}}


def run_text2av(cfg: Text2AVConfig, *, models: Models | None = None, timer=None) -> dict[str, Any]:
    """Generate len(prompts) × num_samples samples into `cfg.out`; returns the samples.json document.
    `models` reuses loaded models; `timer(stage)` (a context manager factory) times the stages cogvideox,
    mmaudio, convert and write (scripts/bench_text2av.py)."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg.validate()
    prompts = read_prompts(cfg.prompts)
    stage = timer or (lambda name: contextlib.nullcontext())
    out = Path(cfg.out)
    models = models or load_models(cfg)
    vm, bundle = models.video, models.audio
    identity = _identity(cfg, prompts, vm.info, bundle)
    rows = _load_previous(out, identity)
    frames_out = benchmark_frame_count(cfg.frames, cfg.video_fps)
    notes: list[str] = []
    if cfg.duration is not None and abs(cfg.duration - cfg.frames / cfg.video_fps) > 1e-6:
        notes.append(f"audio duration {cfg.duration:g} s differs from the video's {cfg.frames / cfg.video_fps:g} s")
    pending = [i for i in range(len(prompts) * cfg.num_samples) if i not in rows]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not cfg.progress, transient=True) as progress:
        task = progress.add_task("text2av", total=len(pending))
        for i in pending:
            prompt, seed = prompts[i % len(prompts)], cfg.seed + i
            with stage("cogvideox"):
                frames = cogvideox.generate_video(vm, prompt, seed=seed, num_frames=cfg.frames, height=cfg.height,
                                                  width=cfg.width, steps=cfg.video_steps, guidance=cfg.guidance,
                                                  dynamic_cfg=cfg.dynamic_cfg)
            with stage("mmaudio"):
                wave, rate, ainfo = generate_audio(bundle, frames, cfg.video_fps, prompt, cfg.audio_duration(), seed,
                                                   steps=cfg.audio_steps, cfg_strength=cfg.cfg_strength,
                                                   negative_prompt=cfg.negative_prompt)
            with stage("convert"):
                small = to_benchmark_video(frames, cfg.video_fps, cfg.size)
                wave16, padded = to_benchmark_audio(wave, rate, len(small))
            with stage("write"):
                rel = write_sample(out, i, frames, wave, rate, cfg.video_fps, small, wave16)
            ainfo = {k: v for k, v in ainfo.items() if k not in ("prompt", "seed")}  # in the row already
            rows[i] = {"index": i, "prompt": prompt, "prompt_index": i % len(prompts), "seed": seed, **rel,
                       "native_frames": len(frames), "native_size": [int(frames.shape[1]), int(frames.shape[2])],
                       "frames": len(small), "audio_padded_samples": padded, "mmaudio": ainfo}
            atomic_write_json(out / "samples.json", _document(cfg, identity, models, frames_out, rows, notes, False))
            progress.update(task, advance=1)
    for note in notes:
        print(f"NOTE: {note}", file=sys.stderr)
    doc = _document(cfg, identity, models, frames_out, rows, notes, complete=True)
    atomic_write_json(out / "samples.json", doc)
    return doc
