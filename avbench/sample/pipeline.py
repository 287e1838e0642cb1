"""The sampling pipeline: load, seed, sample in batches, upsample, write, record.

Layout of OUT:
    video/<i>.mp4   H.264 + AAC (mono, 16 kHz), 10 fps
    audio/<i>.wav   16 kHz mono 16-bit PCM
    samples.json    settings, checkpoint hashes, the timesteps visited, seed and files per sample;
                    rewritten after every batch, `complete: true` at the end
A rerun with the same settings skips the samples already recorded, so an interrupted run resumes; a
larger --num-samples extends a finished run.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.respace import SPACINGS, respaced
from avbench.diffusion.samplers import SAMPLERS, Prediction
from avbench.diffusion.schedules import DiffusionConfig, Schedule
from avbench.io import atomic_write_json
from avbench.sample import media, noise as rng

FORMAT = "avbench-samples"
FORMAT_VERSION = 1
DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "dpmpp-2m": 20, "dpmpp-3s": 20}  # None: every training step
DEFAULT_SPACING = {"ddpm": "linspace", "ddim": "linspace", "dpmpp-2m": "logsnr", "dpmpp-3s": "logsnr"}
# Settings that do not change what is generated; a resume may differ in them.
_NOT_IDENTITY = ("out", "num_samples", "progress", "device")


@dataclass
class SampleConfig:
    checkpoint: Path
    out: Path
    num_samples: int = 16
    batch_size: int = 4
    sampler: str = "dpmpp-3s"
    steps: int | None = None  # None: DEFAULT_STEPS
    spacing: str | None = None  # None: DEFAULT_SPACING
    eta: float = 0.0  # DDIM only
    clip: bool = True  # clamp x̂0 to [-1, 1] at every step
    seed: int = 0
    sr_checkpoint: Path | None = None
    sr_sampler: str = "ddim"
    sr_steps: int = 25
    condition_audio: Path | None = None  # A→V: a folder of .wav/.flac
    condition_video: Path | None = None  # V→A: a folder of .mp4
    guidance_scale: float = 0.0
    original_config: str | None = None  # preset for original MM-Diffusion files
    sr_original_config: str | None = None
    diffusion_steps: int | None = None  # training steps of an original file; checked against ours
    prefer_ema: bool = True
    device: str = "cpu"
    progress: bool = True
    fps: int = 10
    sample_rate: int = 16000

    def validate(self) -> None:
        for name, value in (("--sampler", self.sampler), ("--sr-sampler", self.sr_sampler)):
            if value not in SAMPLERS:
                raise ValueError(f"{name} {value!r} is not a sampler; choose one of {', '.join(SAMPLERS)}")
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise ValueError(f"--spacing {self.spacing!r}: choose one of {', '.join(SPACINGS)}")
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError("--num-samples and --batch-size must be at least 1")
        if self.condition_audio is not None and self.condition_video is not None:
            raise ValueError("give --condition-audio (audio→video) or --condition-video (video→audio), not both")
        if self.guidance_scale and self.condition_audio is None and self.condition_video is None:
            raise ValueError("--guidance-scale only applies to conditional sampling (--condition-audio/--condition-video)")
        if self.eta and self.sampler != "ddim":
            raise ValueError("--eta only applies to --sampler ddim")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class _Plan:
    """Everything fixed before the first batch."""

    model: torch.nn.Module
    info: dict
    train_schedule: Schedule
    schedule: Schedule
    sr: tuple[torch.nn.Module, dict, Schedule] | None
    known: int | None  # 0: video given (V→A), 1: audio given (A→V)
    condition_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sampler_kwargs(name: str, variance: str, cfg: SampleConfig, eta: float, noise) -> dict[str, Any]:
    kw: dict[str, Any] = {"clip": cfg.clip}
    if name == "ddpm":
        kw.update(variance=variance, noise=noise)
    elif name == "ddim":
        kw.update(eta=eta, noise=noise)
    return kw


def _plan(cfg: SampleConfig) -> _Plan:
    from avbench.models.checkpoint import load_for_sampling

    device = torch.device(cfg.device)
    model, info = load_for_sampling(cfg.checkpoint, prefer_ema=cfg.prefer_ema, original_config=cfg.original_config,
                                    diffusion_steps=cfg.diffusion_steps, device=device, expect_kind="mmunet")
    train_schedule = DiffusionConfig.from_dict(info["diffusion"]).schedule_obj()
    steps = cfg.steps if cfg.steps is not None else (DEFAULT_STEPS[cfg.sampler] or train_schedule.num_steps)
    if not 1 <= steps <= train_schedule.num_steps:
        raise ValueError(f"--steps {steps}: the model was trained with {train_schedule.num_steps} diffusion steps, "
                         f"so choose 1..{train_schedule.num_steps} sampling steps")
    schedule = respaced(train_schedule, steps, cfg.spacing or DEFAULT_SPACING[cfg.sampler])
    notes = [f"checkpoint: {n}" for n in info["notes"]]
    sr = None
    if cfg.sr_checkpoint is not None:
        sr_model, sr_info = load_for_sampling(cfg.sr_checkpoint, prefer_ema=cfg.prefer_ema,
                                              original_config=cfg.sr_original_config, device=device,
                                              expect_kind="superres")
        _, _, h, w = model.cfg.video_size
        if sr_model.cfg.small_size != h or h != w:
            raise ValueError(f"{cfg.sr_checkpoint}: upsamples {sr_model.cfg.small_size}px frames but the base model "
                             f"makes {h}x{w}; pair checkpoints of matching sizes")
        sr_train = DiffusionConfig.from_dict(sr_info["diffusion"]).schedule_obj()
        if not 1 <= cfg.sr_steps <= sr_train.num_steps:
            raise ValueError(f"--sr-steps {cfg.sr_steps}: choose 1..{sr_train.num_steps}")
        sr_spacing = DEFAULT_SPACING[cfg.sr_sampler]
        sr = (sr_model, sr_info, respaced(sr_train, cfg.sr_steps, sr_spacing))
        notes += [f"sr checkpoint: {n}" for n in sr_info["notes"]]
    known, files = None, []
    if cfg.condition_audio is not None:
        known, files = 1, media.media_files(cfg.condition_audio, (".wav", ".flac"))
    elif cfg.condition_video is not None:
        known, files = 0, media.media_files(cfg.condition_video, (".mp4",))
    return _Plan(model, info, train_schedule, schedule, sr, known, files, notes)


def _identity(cfg: SampleConfig, plan: _Plan) -> dict[str, Any]:
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IDENTITY}
    d["checkpoint_sha256"] = plan.info["sha256"]
    d["sr_checkpoint_sha256"] = plan.sr[1]["sha256"] if plan.sr else None
    return d


def _load_previous(cfg: SampleConfig, identity: dict[str, Any]) -> dict[int, dict]:
    path = Path(cfg.out) / "samples.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not valid JSON; delete it (and the samples) or choose another --out") from None
    if doc.get("format") != FORMAT or doc.get("identity") != identity:
        raise ValueError(f"{cfg.out}: already holds samples made with other settings or checkpoints; "
                         "choose another --out or delete that folder")
    done = {}
    for row in doc.get("samples", []):
        if all((Path(cfg.out) / row[k]).is_file() for k in ("video", "audio")):
            done[int(row["index"])] = row
    return done


def _conditions(plan: _Plan, cfg: SampleConfig, indices: list[int]) -> tuple[torch.Tensor, list[str], list[str]]:
    F_, C, H, W = plan.model.cfg.video_size
    L = plan.model.cfg.audio_size[1]
    values, names, notes = [], [], []
    for i in indices:
        path = plan.condition_files[i % len(plan.condition_files)]
        if plan.known == 1:
            values.append(media.read_audio_condition(path, L, cfg.sample_rate))
        else:
            video, resized, fps = media.read_video_condition(path, F_, H, W)
            if resized:
                notes.append(f"{path.name}: resized to {H}x{W}")
            if fps is not None and abs(fps - cfg.fps) > 1e-3:
                notes.append(f"{path.name}: {fps:g} fps, the model expects {cfg.fps}; frames were taken as they are")
            values.append(video)
        names.append(path.name)
    return torch.stack(values), names, notes


def _joint_model_fn(model):
    def fn(x, t):
        return model(x[0], x[1], t)

    return fn


def _super_resolve(plan: _Plan, cfg: SampleConfig, low: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[F, 3, h, w] → [F, 3, H, W]; one noise image per clip, shared by its frames as in MM-Diffusion."""
    sr_model, sr_info, sr_schedule = plan.sr
    size = sr_model.cfg.large_size
    low = low.clamp(-1, 1)
    x = torch.randn((1, 3, size, size), generator=gen).expand(low.shape[0], -1, -1, -1).contiguous().to(low.device)
    learned = sr_model.cfg.learn_sigma

    def fn(xs, t):
        out = sr_model(xs[0], t, low)
        if learned:
            eps, var = out.split(3, dim=1)
            return Prediction((eps,), (var,))
        return (out,)

    def noise(like):
        return tuple(torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) for v in like)

    kw = _sampler_kwargs(cfg.sr_sampler, sr_info["diffusion"]["variance"], cfg, 0.0, noise)
    return SAMPLERS[cfg.sr_sampler](fn, (x,), sr_schedule, **kw)[0]


def _document(cfg, plan, identity, rows, complete) -> dict[str, Any]:
    from avbench import __version__

    F_, C, H, W = plan.model.cfg.video_size
    out_size = plan.sr[0].cfg.large_size if plan.sr else H
    sched = plan.schedule
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "avbench_version": __version__,
        "complete": complete,
        "identity": identity,
        "settings": cfg.to_dict(),
        "checkpoint": plan.info,
        "sr_checkpoint": plan.sr[1] if plan.sr else None,
        "sampler": {"name": cfg.sampler, "steps": sched.num_steps, "timesteps": sched.timesteps,
                    "training_steps": plan.train_schedule.num_steps, "eta": cfg.eta, "clip": cfg.clip},
        "sr_sampler": ({"name": cfg.sr_sampler, "steps": plan.sr[2].num_steps, "timesteps": plan.sr[2].timesteps,
                        "training_steps": plan.sr[2].num_train_steps} if plan.sr else None),
        "conditioning": None if plan.known is None else {
            "mode": "audio-to-video" if plan.known == 1 else "video-to-audio",
            "dir": str(cfg.condition_audio if plan.known == 1 else cfg.condition_video),
            "method": "replacement", "guidance_scale": cfg.guidance_scale},
        "video": {"fps": cfg.fps, "frames": F_, "height": out_size, "width": out_size, "codec": "h264+aac"},
        "audio": {"sample_rate": cfg.sample_rate, "samples": plan.model.cfg.audio_size[1], "format": "wav pcm16"},
        "notes": plan.notes,
        "samples": [rows[i] for i in sorted(rows)],
    }
    return doc


def run_sampling(cfg: SampleConfig) -> dict[str, Any]:
    """Generate `cfg.num_samples` samples into `cfg.out`; returns the samples.json document."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg.validate()
    plan = _plan(cfg)
    out = Path(cfg.out)
    identity = _identity(cfg, plan)
    rows = _load_previous(cfg, identity)
    for note in plan.notes:
        print(f"NOTE: {note}", file=sys.stderr)
    device = torch.device(cfg.device)
    F_, C, H, W = plan.model.cfg.video_size
    L = plan.model.cfg.audio_size[1]
    if L != F_ * cfg.sample_rate // cfg.fps:
        plan.notes.append(f"audio window {L} samples is not {F_} frames at {cfg.fps} fps and {cfg.sample_rate} Hz")
    pending = [i for i in range(cfg.num_samples) if i not in rows]
    variance = plan.info["diffusion"]["variance"]
    sampler = SAMPLERS[cfg.sampler]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not cfg.progress, transient=True) as progress:
        task = progress.add_task("samples", total=len(pending))
        steps_task = progress.add_task("steps", total=plan.schedule.num_steps)
        for start in range(0, len(pending), cfg.batch_size):
            idx = pending[start:start + cfg.batch_size]
            gens = rng.generators(cfg.seed, idx)
            x = (rng.draw(gens, (F_, C, H, W), device), rng.draw(gens, (1, L), device))
            model_fn = _joint_model_fn(plan.model)
            cond_names: list[str | None] = [None] * len(idx)
            if plan.known is not None:
                values, cond_names, notes = _conditions(plan, cfg, idx)
                plan.notes += [n for n in notes if n not in plan.notes]
                cond_noise = rng.draw(gens, values.shape[1:], device)
                model_fn = replacement_model_fn(model_fn, plan.train_schedule, known=plan.known,
                                                value=values.to(device), noise=cond_noise,
                                                guidance_scale=cfg.guidance_scale)
            progress.reset(steps_task, total=plan.schedule.num_steps)
            kw = _sampler_kwargs(cfg.sampler, variance, cfg, cfg.eta, rng.noise_fn(gens))
            video, audio = sampler(model_fn, x, plan.schedule,
                                   callback=lambda k, n: progress.update(steps_task, completed=k), **kw)
            for b, i in enumerate(idx):
                clip_video = video[b]
                if plan.sr is not None:
                    clip_video = _super_resolve(plan, cfg, clip_video, gens[b])
                pcm = media.to_pcm(audio[b])
                rel_v, rel_a = f"video/{i}.mp4", f"audio/{i}.wav"
                media.write_wav(out / rel_a, pcm, cfg.sample_rate)
                media.write_mp4(out / rel_v, media.to_uint8_frames(clip_video), pcm, cfg.fps, cfg.sample_rate)
                rows[i] = {"index": i, "seed": cfg.seed + i, "video": rel_v, "audio": rel_a, "condition": cond_names[b]}
            atomic_write_json(out / "samples.json", _document(cfg, plan, identity, rows, complete=False))
            progress.update(task, advance=len(idx))
    doc = _document(cfg, plan, identity, rows, complete=True)
    atomic_write_json(out / "samples.json", doc)
    return doc
