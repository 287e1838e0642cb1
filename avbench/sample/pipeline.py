"""The sampling pipeline: load, seed, sample in batches, upsample, write, record.

Layout of OUT:
    video/<i>.mp4   H.264 + AAC (mono, 16 kHz), 10 fps
    audio/<i>.wav   16 kHz mono 16-bit PCM
    samples.json    settings, checkpoint hashes, the timesteps visited, seed and files per sample;
                    rewritten after every batch, `complete: true` at the end
A rerun with the same settings skips the samples already recorded, so an interrupted run resumes; a
larger --num-samples extends a finished run. A `latent` checkpoint samples latents and decodes them
with its codec into the same layout (`avbench.sample.latent`).

The module is over 400 lines on purpose: one sample's whole path (plan, conditions, sampling loop,
decode, record) reads top to bottom here; what is specific to latents or media lives next door.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from avbench import __version__, compute
from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.denoisers import joint_denoiser, superres_denoiser
from avbench.diffusion.respace import SPACINGS
from avbench.diffusion.samplers import SAMPLERS, SamplerPlan, defaults_text, resolve_sampler, sampler_spec
from avbench.diffusion.schedules import DiffusionConfig, Schedule
from avbench.errors import SampleError
from avbench.io import atomic_write_json
from avbench.media import to_pcm, to_uint8_frames, write_mp4, write_wav
from avbench.models.checkpoint import load_for_sampling
from avbench.sample import latent as lat
from avbench.sample import media
from avbench.sample import noise as rng

FORMAT = "avbench-samples"
FORMAT_VERSION = 1
# Settings that do not change what is generated; a resume may differ in them.
_NOT_IDENTITY = ("out", "num_samples", "progress", "device")

# The sampling settings a preset may fix, and avbench's own defaults for them (None: the sampler's own).
_DEFAULTS: dict[str, Any] = {"sampler": "dpmpp-3s", "steps": None, "spacing": None, "clip": True,
                             "sr_sampler": "ddim", "sr_steps": 25, "sr_spacing": None, "sr_clip": True,
                             "sr_clamp_low_res": True}
# Whole sampling recipes. `seed` is MM-Diffusion's (py_scripts/multimodal_sample_sr.py with
# ssh_scripts/multimodal_sample_sr.sh): its multimodal DPM-Solver (noise prediction, singlestep, order 3,
# log-SNR, 20 steps) without clipping; SR by guided-diffusion DDIM `ddim25` (timesteps 0, 40, ..., 960)
# with clip_denoised (the script's default True), on the base output as it comes (not clamped).
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {"sampler": "dpm-solver-3s", "steps": 20, "spacing": "dpm-logsnr", "clip": False,
             "sr_sampler": "ddim", "sr_steps": 25, "sr_spacing": "leading", "sr_clip": True,
             "sr_clamp_low_res": False},
}


@dataclass
class SampleConfig:
    # metadata["help"] is the help of the generated `avbench sample` option
    checkpoint: Path = field(metadata={
        "help": "avbench checkpoint (RUN/model.pt) or an original MM-Diffusion state-dict file."})
    out: Path = field(metadata={"help": "Output folder: video/<i>.mp4, audio/<i>.wav, samples.json."})
    num_samples: int = field(default=16, metadata={"help": "How many samples.", "min": 1})
    batch_size: int = field(default=4, metadata={"help": "Samples per model call.", "min": 1})
    preset: str | None = field(default=None, metadata={
        "help": f"A whole sampling recipe: {' | '.join(PRESETS)} (seed: MM-Diffusion's, dpm-solver-3s 20 steps "
                "unclipped, SR ddim25 clipped). Options given explicitly override the preset's values; another "
                "--sampler/--sr-sampler also leaves out the preset's steps and spacing for it."})
    sampler: str | None = field(default=None, metadata={
        "help": f"{' | '.join(SAMPLERS)}. Default: the preset's, else dpmpp-3s (DPM-Solver++ singlestep order 3; "
                "dpm-solver-3s is the seed's noise-prediction DPM-Solver)."})
    steps: int | None = field(default=None, metadata={
        "help": f"Sampling steps (= model calls). Default: the sampler's ({defaults_text('steps')})."})
    spacing: str | None = field(default=None, metadata={
        "help": f"Timesteps visited: {' | '.join(SPACINGS)}. Default: the sampler's ({defaults_text('spacing')})."})
    eta: float = field(default=0.0, metadata={"help": "DDIM η (0 = deterministic); DDIM only."})
    clip: bool | None = field(default=None, metadata={
        "help": "Clamp the denoised estimate to [-1, 1] at every step. Default: the preset's, else on."})
    seed: int = field(default=0, metadata={"help": "Sample i uses seed + i; the same seed gives the same samples."})
    sr_checkpoint: Path | None = field(default=None, metadata={
        "help": "Super-resolution checkpoint (64→256) applied to every frame."})
    sr_sampler: str | None = field(default=None, metadata={
        "help": "Sampler of the super-resolution pass. Default: the preset's, else ddim."})
    sr_steps: int | None = field(default=None, metadata={
        "help": "Steps of the super-resolution pass. Default: the preset's, else 25."})
    sr_spacing: str | None = field(default=None, metadata={
        "help": f"Timesteps of the SR pass: {' | '.join(SPACINGS)} (leading: guided-diffusion's ddimN, "
                "0, 40, ..., 960 for 25). Default: the preset's, else the SR sampler's."})
    sr_clip: bool | None = field(default=None, metadata={
        "help": "Clamp the SR pass's denoised estimate to [-1, 1]. Default: the preset's, else on."})
    sr_clamp_low_res: bool | None = field(default=None, metadata={
        "help": "Clamp the base frames to [-1, 1] before upsampling. Default: the preset's (seed: off), else on."})
    condition_audio: Path | None = field(default=None, metadata={
        "help": "Folder of .wav/.flac: generate video for this audio (A→V)."})
    condition_video: Path | None = field(default=None, metadata={
        "help": "Folder of .mp4 (10 fps): generate audio for this video (V→A)."})
    guidance_scale: float = field(default=0.0, metadata={
        "help": "Gradient guidance towards the condition (0 = replacement only)."})
    original_config: str | None = field(default=None, metadata={
        "help": "Architecture of an original MM-Diffusion file: a preset (seed | fixture_small | tiny; default "
                "seed, recorded as a note) or a .json/.toml file of the original code's flags "
                "(num_channels, cross_attention_windows, ..., diffusion_steps)."})
    sr_original_config: str | None = field(default=None, metadata={
        "help": "The same for an original SR file: a preset or a flags file (sr_num_channels, large_size, ...)."})
    diffusion_steps: int | None = field(default=None, metadata={
        "help": "Training diffusion steps of an original file (default 1000, recorded as a note); "
                "for avbench checkpoints it must match the stored value."})
    video_vae: Path | None = field(default=None, metadata={
        "help": "Latent checkpoints: the codec's video VAE (a diffusers AutoencoderKL folder or hub id). "
                "Default: the codec's own (HF cache)."})
    audio_vae: Path | None = field(default=None, metadata={
        "help": "Latent checkpoints: the codec's audio VAE file or folder. Default: the codec's own."})
    vocoder: Path | None = field(default=None, metadata={
        "help": "Latent checkpoints: the codec's vocoder file or folder. Default: the codec's own."})
    prefer_ema: bool = field(default=True, metadata={"help": "Use the EMA weights (--raw-weights: the raw ones)."})
    device: str = field(default="auto", metadata={"help": compute.DEVICE_HELP + "."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    fps: int = 10  # of the written media; fixed by the model, not an option
    sample_rate: int = 16000

    def resolved(self) -> SampleConfig:
        """This config with every sampling setting filled in: given values, then the preset's, then avbench's
        defaults. What runs and what samples.json records is always the resolved config."""
        if self.preset is not None and self.preset not in PRESETS:
            raise SampleError(f"--preset {self.preset!r} is not a sampling preset; choose one of {', '.join(PRESETS)}")
        preset = dict(PRESETS.get(self.preset or "", {}))
        # Steps and spacing belong to the preset's sampler: another sampler keeps its own defaults.
        for stage, keys in (("sampler", ("steps", "spacing")), ("sr_sampler", ("sr_steps", "sr_spacing"))):
            if getattr(self, stage) is not None and getattr(self, stage) != preset.get(stage):
                for k in keys:
                    preset.pop(k, None)
        filled = {k: (getattr(self, k) if getattr(self, k) is not None else preset.get(k, default))
                  for k, default in _DEFAULTS.items()}
        return replace(self, **filled, device=compute.resolve_device(self.device))

    def validate(self) -> None:
        """Checks that need no checkpoint (the step counts are checked against it in `_plan`)."""
        cfg = self.resolved()
        sampler_spec(cfg.sampler, cfg.sampler_options(), labels=_MAIN_LABELS)
        sampler_spec(cfg.sr_sampler, labels=_SR_LABELS)
        for flag, value in (("--spacing", cfg.spacing), ("--sr-spacing", cfg.sr_spacing)):
            if value is not None and value not in SPACINGS:
                raise SampleError(f"{flag} {value!r}: choose one of {', '.join(SPACINGS)}")
        if self.num_samples < 1 or self.batch_size < 1:
            raise SampleError("--num-samples and --batch-size must be at least 1")
        if self.condition_audio is not None and self.condition_video is not None:
            raise SampleError("give --condition-audio (audio→video) or --condition-video (video→audio), not both")
        if self.guidance_scale and self.condition_audio is None and self.condition_video is None:
            raise SampleError("--guidance-scale only applies to conditional sampling (--condition-audio/--condition-video)")

    def sampler_options(self) -> dict[str, Any]:
        """The sampler options set away from their defaults (the registry refuses those a sampler lacks)."""
        return {"eta": self.eta} if self.eta else {}

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


_MAIN_LABELS = {"sampler": "--sampler", "steps": "--steps", "spacing": "--spacing", "eta": "--eta"}
_SR_LABELS = {"sampler": "--sr-sampler", "steps": "--sr-steps", "spacing": "--sr-spacing"}


def base_sampler_plan(cfg: SampleConfig, train_schedule: Schedule) -> SamplerPlan:
    """The base model's sampler: the registry's plan for --sampler/--steps/--spacing/--eta (after --preset)."""
    cfg = cfg.resolved()
    return resolve_sampler(cfg.sampler, train_schedule, steps=cfg.steps, spacing=cfg.spacing,
                           options=cfg.sampler_options(), labels=_MAIN_LABELS)


def sr_sampler_plan(cfg: SampleConfig, sr_train_schedule: Schedule) -> SamplerPlan:
    """The super-resolution pass's sampler (--sr-sampler, --sr-steps, --sr-spacing, after --preset)."""
    cfg = cfg.resolved()
    return resolve_sampler(cfg.sr_sampler, sr_train_schedule, steps=cfg.sr_steps, spacing=cfg.sr_spacing,
                           labels=_SR_LABELS)


@dataclass
class _Plan:
    """Everything fixed before the first batch."""

    model: torch.nn.Module
    info: dict
    train_schedule: Schedule
    sampler: SamplerPlan
    sr: tuple[torch.nn.Module, dict, SamplerPlan] | None
    known: int | None  # 0: video given (V→A), 1: audio given (A→V)
    condition_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    latent: lat.LatentSampling | None = None  # a latent model's codec and layout


def _plan(cfg: SampleConfig) -> _Plan:
    device = torch.device(compute.check_device(cfg.device, error=SampleError))
    model, info = load_for_sampling(cfg.checkpoint, prefer_ema=cfg.prefer_ema, original_config=cfg.original_config,
                                    diffusion_steps=cfg.diffusion_steps, device=device,
                                    expect_kind=("mmunet", "latent"))
    info["diffusion"] = DiffusionConfig.from_dict(info["diffusion"]).to_dict()  # the loader's plain dict, completed
    train_schedule = DiffusionConfig.from_dict(info["diffusion"]).schedule_obj()
    sampler = base_sampler_plan(cfg, train_schedule)
    notes = [f"checkpoint: {n}" for n in info["notes"]]
    sr = latent = None
    if info["kind"] == "latent":
        if cfg.sr_checkpoint is not None:
            raise SampleError(f"{cfg.checkpoint}: a latent model decodes at its own size "
                              f"({model.cfg.pixel_size} px); drop --sr-checkpoint")
        latent = lat.plan_latent(model.cfg, lat.codec_paths(cfg.video_vae, cfg.audio_vae, cfg.vocoder),
                                 device=device, fps=cfg.fps, sample_rate=cfg.sample_rate, where=str(cfg.checkpoint))
        notes.append("latent model: samples decoded by codec "
                     f"{model.cfg.codec}; x0 is not clamped (latents are not pixels in [-1, 1])")
    if cfg.sr_checkpoint is not None:
        sr_model, sr_info = load_for_sampling(cfg.sr_checkpoint, prefer_ema=cfg.prefer_ema,
                                              original_config=cfg.sr_original_config, device=device,
                                              expect_kind="superres")
        sr_info["diffusion"] = DiffusionConfig.from_dict(sr_info["diffusion"]).to_dict()
        _, _, h, w = model.cfg.video_size
        if sr_model.cfg.small_size != h or h != w:
            raise SampleError(f"{cfg.sr_checkpoint}: upsamples {sr_model.cfg.small_size}px frames but the base model "
                              f"makes {h}x{w}; pair checkpoints of matching sizes")
        sr_train = DiffusionConfig.from_dict(sr_info["diffusion"]).schedule_obj()
        sr = (sr_model, sr_info, sr_sampler_plan(cfg, sr_train))
        notes += [f"sr checkpoint: {n}" for n in sr_info["notes"]]
    known, files = None, []
    if cfg.condition_audio is not None:
        known, files = 1, media.media_files(cfg.condition_audio, (".wav", ".flac"))
    elif cfg.condition_video is not None:
        known, files = 0, media.media_files(cfg.condition_video, (".mp4",))
    return _Plan(model, info, train_schedule, sampler, sr, known, files, notes, latent)


def plan_sampling(cfg: SampleConfig) -> _Plan:
    """Validate `cfg`, resolve its preset and load what it names: the models and the sampler plans that
    `sample_base` and `super_resolve` use (what `avbench sample` runs, without the media writing)."""
    cfg.validate()
    return _plan(cfg.resolved())


def _identity(cfg: SampleConfig, plan: _Plan) -> dict[str, Any]:
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IDENTITY}
    d["checkpoint_sha256"] = plan.info["sha256"]
    d["sr_checkpoint_sha256"] = plan.sr[1]["sha256"] if plan.sr else None
    if plan.latent is not None:  # other codec weights make other samples
        d["codec"] = plan.latent.codec.describe(cfg.fps)
    return d


def _load_previous(cfg: SampleConfig, identity: dict[str, Any]) -> dict[int, dict]:
    return load_previous(cfg.out, identity)


def load_previous(out: str | Path, identity: dict[str, Any]) -> dict[int, dict]:
    """The rows of an earlier run in `out` whose video and audio files exist, once its samples.json shows
    the same `identity` (every setting that changes what is generated); any other run there is refused.
    Every `avbench sample` command resumes through this, so they all follow one rule."""
    path = Path(out) / "samples.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise SampleError(f"{path}: not valid JSON; delete it (and the samples) or choose another --out") from None
    if doc.get("format") != FORMAT or doc.get("identity") != identity:
        raise SampleError(f"{out}: already holds samples made with other settings or checkpoints; "
                         "choose another --out or delete that folder")
    done = {}
    for row in doc.get("samples", []):
        if all((Path(out) / row[k]).is_file() for k in ("video", "audio")):
            done[int(row["index"])] = row
    return done


def document_head(kind: str, identity: dict[str, Any], settings: dict[str, Any], complete: bool) -> dict[str, Any]:
    """The fields every samples.json starts with, whichever command wrote it (joint, latent, v2a, text2av):
    `load_previous` and the readers in avbench/metrics rely on them."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "avbench_version": __version__,
            "complete": complete, "kind": kind, "identity": identity, "settings": settings}


def _conditions(plan: _Plan, cfg: SampleConfig, indices: list[int]) -> tuple[torch.Tensor, list[str], list[str]]:
    F_, C, H, W = plan.model.cfg.video_size
    L = plan.model.cfg.audio_size[1]
    if plan.latent is not None:  # conditions are read as pixels/samples, encoded by the caller
        H = W = plan.latent.pixel_size
        L = plan.latent.samples
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


def sample_base(plan: _Plan, cfg: SampleConfig, x: tuple[torch.Tensor, torch.Tensor], model_fn=None, *,
                noise=None, callback=None) -> tuple[torch.Tensor, ...]:
    """(video, audio) from the starting noises `x` with the planned sampler and `cfg`'s (resolved) clipping.
    `model_fn` replaces the plain joint denoiser (conditional sampling)."""
    cfg = cfg.resolved()
    model_fn = model_fn or joint_denoiser(plan.model, plan.info["diffusion"]["variance"])
    kw = {"noise": noise} if noise is not None else {}
    clip = cfg.clip and plan.latent is None
    return plan.sampler.run(model_fn, x, clip=clip, callback=callback, **kw)


def super_resolve(plan: _Plan, cfg: SampleConfig, low: torch.Tensor, x: torch.Tensor, noise=None) -> torch.Tensor:
    """Frames [F, 3, h, w] → [F, 3, H, W] from the starting noise `x` ([1, 3, H, W], shared by the frames as
    in MM-Diffusion); the low-resolution frames are clamped to [-1, 1] first unless `sr_clamp_low_res` is off."""
    cfg = cfg.resolved()
    sr_model, sr_info, sampler = plan.sr
    if cfg.sr_clamp_low_res:
        low = low.clamp(-1, 1)
    x = x.to(low.device).expand(low.shape[0], -1, -1, -1).contiguous()
    denoiser = superres_denoiser(sr_model, low, sr_info["diffusion"]["variance"])
    kw = {"noise": noise} if noise is not None else {}
    return sampler.run(denoiser, (x,), clip=cfg.sr_clip, **kw)[0]


def _super_resolve(plan: _Plan, cfg: SampleConfig, low: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`super_resolve` with the noise drawn from the clip's own generator."""
    size = plan.sr[0].cfg.large_size
    x = torch.randn((1, 3, size, size), generator=gen)

    def noise(like):
        return tuple(torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) for v in like)

    return super_resolve(plan, cfg, low, x, noise)


def _document(cfg, plan, identity, rows, complete) -> dict[str, Any]:

    F_, C, H, W = plan.model.cfg.video_size
    out_size = plan.sr[0].cfg.large_size if plan.sr else plan.latent.pixel_size if plan.latent else H
    samples = plan.latent.samples if plan.latent else plan.model.cfg.audio_size[1]
    sched = plan.sampler.schedule
    doc = {
        **document_head("latent" if plan.latent else "joint", identity, cfg.to_dict(), complete),
        "checkpoint": plan.info,
        "sr_checkpoint": plan.sr[1] if plan.sr else None,
        "preset": cfg.preset,
        "sampler": {"name": cfg.sampler, "steps": sched.num_steps, "spacing": plan.sampler.spacing,
                    "timesteps": sched.timesteps, "training_steps": plan.train_schedule.num_steps, "eta": cfg.eta,
                    "clip": cfg.clip and plan.latent is None},
        "sr_sampler": ({"name": cfg.sr_sampler, "steps": plan.sr[2].steps, "spacing": plan.sr[2].spacing,
                        "timesteps": plan.sr[2].timesteps, "training_steps": plan.sr[2].schedule.num_train_steps,
                        "clip": cfg.sr_clip, "clamp_low_res": cfg.sr_clamp_low_res}
                       if plan.sr else None),
        "conditioning": None if plan.known is None else {
            "mode": "audio-to-video" if plan.known == 1 else "video-to-audio",
            "dir": str(cfg.condition_audio if plan.known == 1 else cfg.condition_video),
            "method": "replacement", "guidance_scale": cfg.guidance_scale},
        "video": {"fps": cfg.fps, "frames": F_, "height": out_size, "width": out_size, "codec": "h264+aac"},
        "audio": {"sample_rate": cfg.sample_rate, "samples": samples, "format": "wav pcm16"},
        "latent": plan.latent.describe() if plan.latent else None,
        "notes": plan.notes,
        "samples": [rows[i] for i in sorted(rows)],
    }
    return doc


def run_sampling(cfg: SampleConfig) -> dict[str, Any]:
    """Generate `cfg.num_samples` samples into `cfg.out`; returns the samples.json document."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg.validate()
    cfg = cfg.resolved()
    plan = _plan(cfg)
    out = Path(cfg.out)
    identity = _identity(cfg, plan)
    rows = _load_previous(cfg, identity)
    for note in plan.notes:
        print(f"NOTE: {note}", file=sys.stderr)
    device = torch.device(cfg.device)
    F_, C, H, W = plan.model.cfg.video_size
    L = plan.model.cfg.audio_size[1]
    if plan.latent is None and L != F_ * cfg.sample_rate // cfg.fps:
        plan.notes.append(f"audio window {L} samples is not {F_} frames at {cfg.fps} fps and {cfg.sample_rate} Hz")
    pending = [i for i in range(cfg.num_samples) if i not in rows]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not cfg.progress, transient=True) as progress:
        task = progress.add_task("samples", total=len(pending))
        steps_task = progress.add_task("steps", total=plan.sampler.steps)
        for start in range(0, len(pending), cfg.batch_size):
            idx = pending[start:start + cfg.batch_size]
            gens = rng.generators(cfg.seed, idx)
            x = (rng.draw(gens, (F_, C, H, W), device), rng.draw(gens, tuple(plan.model.cfg.audio_size), device))
            model_fn = joint_denoiser(plan.model, plan.info["diffusion"]["variance"])
            cond_names: list[str | None] = [None] * len(idx)
            if plan.known is not None:
                values, cond_names, notes = _conditions(plan, cfg, idx)
                plan.notes += [n for n in notes if n not in plan.notes]
                if plan.latent is not None:
                    values = plan.latent.encode_condition(values.to(device), plan.known)
                cond_noise = rng.draw(gens, values.shape[1:], device)
                model_fn = replacement_model_fn(model_fn, plan.train_schedule, known=plan.known,
                                                value=values.to(device), noise=cond_noise,
                                                guidance_scale=cfg.guidance_scale)
            progress.reset(steps_task, total=plan.sampler.steps)
            video, audio = sample_base(plan, cfg, x, model_fn, noise=rng.noise_fn(gens),
                                       callback=lambda k, n: progress.update(steps_task, completed=k))
            if plan.latent is not None:
                video, audio = plan.latent.decode(video, audio)
            for b, i in enumerate(idx):
                clip_video = video[b]
                if plan.sr is not None:
                    clip_video = _super_resolve(plan, cfg, clip_video, gens[b])
                pcm = to_pcm(audio[b])
                rel_v, rel_a = f"video/{i}.mp4", f"audio/{i}.wav"
                write_wav(out / rel_a, pcm, cfg.sample_rate)
                write_mp4(out / rel_v, to_uint8_frames(clip_video), pcm, cfg.fps, cfg.sample_rate)
                rows[i] = {"index": i, "seed": cfg.seed + i, "video": rel_v, "audio": rel_a, "condition": cond_names[b]}
            atomic_write_json(out / "samples.json", _document(cfg, plan, identity, rows, complete=False))
            progress.update(task, advance=len(idx))
    doc = _document(cfg, plan, identity, rows, complete=True)
    atomic_write_json(out / "samples.json", doc)
    return doc
