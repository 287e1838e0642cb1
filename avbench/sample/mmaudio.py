"""MMAudio video→audio generation: load a variant's parts (`load_bundle`), then `generate_audio` for one clip.

One clip goes: frames → CLIP frames (8 fps, squashed to 384², bicubic) and Synchformer frames (25 fps,
short side to 224 bicubic, centre crop) → features; prompt → CLIP text tokens; Euler flow matching with
classifier-free guidance from seeded noise; latents → VAE decoder → mel → vocoder → wave.

Conditioning frames are chosen with the curation sample-and-hold rule (`avbench.curate.hold`): output
frame k at rate r shows the latest source frame at or before k / r. (MMAudio's own reader takes the
first decoded frame at or after each target time; the two agree when the target times fall on source
frames and otherwise differ by one source frame at most. avbench uses one rule everywhere so generated and
curated clips are timed alike, and records the rates with every sample.) The resizes are those of
MMAudio's `load_video` (torchvision `v2.Resize` on uint8 frames = torch's antialiased bicubic on uint8).

Variants are `mmaudio-small-16k` (BigVGAN-v1 vocoder), the 44.1 kHz ones (vocoder: diffusers'
`MMAudioVocoder` with BigVGAN-v2's weights from the hub's `nvidia/bigvgan_v2_44khz_128band_512x` through the HF
cache, or a local file), and `tiny-16k` / `tiny-44k`, test-only variants with tiny widths on the 16 kHz and
the 44.1 kHz path (v1-44-style VAE, diffusers' vocoder) whose files `avbench.sample.tiny.write_tiny_mmaudio`
writes (seeded random weights; no released file exists).

`MMAudioOptions` is the one set of MMAudio options (variant, weight files, steps, CFG, precision, device)
that `avbench sample v2a` and `avbench sample text2av` both inherit, so each is written once; beside it
the two output steps they share (audio to the metrics' 16 kHz, one sample's mp4 + wav). The module is
longer than most because it is the one place where those two commands meet MMAudio: loading, conditioning
frames, generation, the shared options and the shared output, each short.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from avbench import compute
from avbench import weights as registry
from avbench.compute import PRECISIONS, resolve_precision
from avbench.curate.audiotrack import SOXR_QUALITY
from avbench.curate.hold import hold_indices, uniform_times
from avbench.diffusion.flow_matching import FLOW_SAMPLERS, flow_sampler, guided_velocity, prior_noise, time_grid
from avbench.errors import CheckpointError, SampleError
from avbench.io import sha256_file
from avbench.media import write_mp4, write_wav
from avbench.models.mmaudio.bigvgan import load_vocoder
from avbench.models.mmaudio.clip import CLIP_WEIGHTS, CLIPConfig, load_clip
from avbench.models.mmaudio.network import VARIANTS as NETWORKS
from avbench.models.mmaudio.network import MMAudio, MMAudioConfig, build_network, load_network
from avbench.models.mmaudio.sequences import CLIP_FPS, SYNC_FPS, sequence_lengths
from avbench.models.mmaudio.synchformer import SynchformerConfig, encode_sync_frames, load_synchformer
from avbench.models.mmaudio.tokenizer import VOCAB_WEIGHTS, CLIPTokenizer
from avbench.models.mmaudio.vae import AUDIO_VAES, load_audio_vae
from avbench.models.state_dict import clean_state_dict, safe_load

__all__ = ["METRICS_RATE", "MMAUDIO_VARIANTS", "ROLES", "MMAudioBundle", "MMAudioOptions", "MMAudioVariant",
           "audio_model_field", "clip_transform", "generate_audio", "load_bundle", "parse_precision",
           "resample_audio", "sync_transform", "tiny_configs", "write_clip"]

ROLES = ("network", "vae", "vocoder", "synchformer", "clip", "vocab")
TRAINED_DURATION_S = 8.0  # every released variant was trained on 8 s clips


@dataclass(frozen=True)
class MMAudioVariant:
    """What one `--audio-model` name loads: the network variant, the codec mode, and per role either the
    registry entry (released files: checked against the published digest) or, for the test-only
    variant, just the file name looked for in a weights folder."""

    name: str
    network: str  # key of avbench.models.mmaudio.network.VARIANTS
    mode: str  # "16k" | "44k" | "tiny" | "tiny44": VAE and vocoder mode
    registry: Mapping[str, str | None]  # role -> avbench.weights name (None: no registered file)
    filenames: Mapping[str, str]  # role -> file name inside a --weights-dir
    test_only: bool = False

    def flag(self, role: str) -> str:
        return _FLAGS[role]


_FLAGS = {"network": "--network-weights", "vae": "--vae-weights", "vocoder": "--vocoder-weights",
          "synchformer": "--synchformer-weights", "clip": "--clip-weights", "vocab": "--clip-vocab"}


def _released(name: str, network: str, mode: str, net_weights: str) -> MMAudioVariant:
    reg = {"network": net_weights, "vae": f"mmaudio-vae-{mode}",
           "vocoder": "mmaudio-bigvgan-16k" if mode == "16k" else None,
           "synchformer": "synchformer", "clip": CLIP_WEIGHTS, "vocab": VOCAB_WEIGHTS}
    files = {role: registry.REGISTRY[n].filename for role, n in reg.items() if n in registry.REGISTRY}
    return MMAudioVariant(name, network, mode, reg, files)


MMAUDIO_VARIANTS: dict[str, MMAudioVariant] = {
    "mmaudio-small-16k": _released("mmaudio-small-16k", "small_16k", "16k", "mmaudio-net-small-16k"),
    **{f"mmaudio-{v.replace('_', '-')}": _released(f"mmaudio-{v.replace('_', '-')}", v, "44k",
                                                   f"mmaudio-net-{v.replace('_', '-')}")
       for v in ("small_44k", "medium_44k", "large_44k", "large_44k_v2")},
    # Test-only: random weights written by avbench.sample.tiny.write_tiny_mmaudio under these names. The
    # two share the condition encoders' files (same seeds, same bytes), so both fit in one folder.
    "tiny-16k": MMAudioVariant("tiny-16k", "tiny_16k", "tiny", dict.fromkeys(ROLES),
                               {"network": "tiny_16k.pth", "vae": "vae-tiny.pth", "vocoder": "bigvgan-tiny.pt",
                                "synchformer": "synchformer-tiny.pth", "clip": "clip-tiny.bin",
                                "vocab": "bpe-tiny.txt"}, test_only=True),
    "tiny-44k": MMAudioVariant("tiny-44k", "tiny_44k", "tiny44", dict.fromkeys(ROLES),
                               {"network": "tiny_44k.pth", "vae": "vae44-tiny.pth",
                                "vocoder": "bigvgan-v2-tiny.pt", "synchformer": "synchformer-tiny.pth",
                                "clip": "clip-tiny.bin", "vocab": "bpe-tiny.txt"}, test_only=True),
}


def tiny_configs(vocab_size: int, variant: str = "tiny-16k") -> dict[str, Any]:
    """Configs of a test-only variant's parts (`tiny-16k` or `tiny-44k`), made to fit each other
    (CLIP/Synchformer widths feed the network, the VAE's channels are its latents). `vocab_size` comes
    from the tiny merges file."""
    spec = MMAUDIO_VARIANTS[variant]
    if not spec.test_only:
        raise SampleError(f"{variant} is a released variant; tiny configs exist for the test-only ones only")
    clip = dataclasses.replace(CLIPConfig.tiny(), vocab_size=vocab_size)
    sync = SynchformerConfig.tiny()
    net = dataclasses.replace(NETWORKS[spec.network], latent_dim=AUDIO_VAES[spec.mode].latent_channels,
                              clip_dim=clip.embed_dim, sync_dim=sync.embed_dim, text_dim=clip.text_width,
                              text_seq_len=clip.context_length)
    return {"network": net, "clip": clip, "synchformer": sync}


@dataclass
class MMAudioBundle:
    """Every part of one variant on one device and dtype, plus where each file came from."""

    variant: MMAudioVariant
    network: MMAudio
    vae: torch.nn.Module
    vocoder: torch.nn.Module
    synchformer: torch.nn.Module
    clip: torch.nn.Module
    tokenizer: CLIPTokenizer
    device: torch.device
    dtype: torch.dtype
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> file, sha256, check

    @property
    def sample_rate(self) -> int:
        return self.network.config.sample_rate

    def describe(self) -> dict[str, Any]:
        return {"name": self.variant.name, "network": self.variant.network, "mode": self.variant.mode,
                "sample_rate": self.sample_rate, "device": str(self.device), "dtype": str(self.dtype).split(".")[-1],
                "test_only": self.variant.test_only, "weights": self.weights}


def _locate(variant: MMAudioVariant, role: str, paths: Mapping[str, Any], weights_dir: Path | None) -> dict[str, Any]:
    """The file for `role`: an explicit path, else the released name in `weights_dir`, else the registry
    (environment variable, avbench cache). Registered files are checked against their published digest."""
    explicit = paths.get(role)
    local = Path(explicit) if explicit else None
    if local is None and weights_dir is not None and role in variant.filenames:
        candidate = Path(weights_dir) / variant.filenames[role]
        local = candidate if candidate.exists() else None
    name = variant.registry.get(role)
    if name is not None and name in registry.REGISTRY:
        path, digest = registry.resolve(name, local)
        return {"file": str(path), "sha256": digest, "registry": name, "check": registry.REGISTRY[name].check()}
    if local is None and role == "vocoder" and variant.mode == "44k":
        local = _hub_vocoder44()
    if local is None:
        where = f" or {Path(weights_dir) / variant.filenames[role]}" if weights_dir and role in variant.filenames else ""
        what = f"{role} file"
        raise SampleError(f"{variant.name}: no {what}; pass {variant.flag(role)} PATH{where}")
    if not local.exists():
        raise SampleError(f"{local}: no such file for the {variant.name} {role}; check {variant.flag(role)}")
    digest = sha256_file(local) if local.is_file() else None
    return {"file": str(local), "sha256": digest, "registry": None,
            "check": "none (test-only variant)" if variant.test_only else "none (no published digest)"}


VOCODER44_HUB_ID = "nvidia/bigvgan_v2_44khz_128band_512x"  # what MMAudio's 44.1 kHz mode loads (BigVGAN-v2)


def _hub_vocoder44() -> Path:
    """BigVGAN-v2's generator from the Hugging Face hub through the user's HF cache (as MMAudio loads it)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SampleError(f"the 44.1 kHz vocoder comes from the Hugging Face hub ({VOCODER44_HUB_ID}) and "
                          "huggingface_hub is not installed; pip install -e '.[text2av]' or pass --vocoder-weights "
                          "PATH (bigvgan_generator.pt or a diffusers MMAudioVocoder folder)") from None
    try:
        return Path(hf_hub_download(VOCODER44_HUB_ID, "bigvgan_generator.pt"))
    except Exception as exc:  # noqa: BLE001 - offline, gated or missing: all mean "give a local copy"
        raise SampleError(f"could not get {VOCODER44_HUB_ID} (bigvgan_generator.pt) from the Hugging Face hub or its "
                          f"cache ({type(exc).__name__}); pass --vocoder-weights PATH to a local bigvgan_generator.pt "
                          "or diffusers MMAudioVocoder folder") from None


def _load_tiny_network(variant: str, cfg: MMAudioConfig, path: str) -> MMAudio:
    sd = clean_state_dict(safe_load(path))
    model = build_network(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not a {variant} MMAudio network ({str(exc).splitlines()[0]}); "
                              f"write it with avbench.sample.tiny.write_tiny_mmaudio(dir, variant={variant!r})") from None
    model.refresh_tables()
    return model.eval()


def load_bundle(variant: str, paths: Mapping[str, Any] | None = None, weights_dir: str | Path | None = None,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MMAudioBundle:
    """Load every part of `variant` (a key of MMAUDIO_VARIANTS). `paths` maps roles (ROLES) to files that
    override the lookup; missing ones come from `weights_dir` (released file names) or the registry."""
    if variant not in MMAUDIO_VARIANTS:
        raise SampleError(f"--audio-model {variant!r} is not an MMAudio variant; choose one of "
                          f"{', '.join(MMAUDIO_VARIANTS)}")
    spec = MMAUDIO_VARIANTS[variant]
    paths = dict(paths or {})
    unknown = sorted(set(paths) - set(ROLES))
    if unknown:
        raise SampleError(f"unknown MMAudio weight roles {unknown}; use {', '.join(ROLES)}")
    found = {role: _locate(spec, role, paths, Path(weights_dir) if weights_dir else None) for role in ROLES}
    device = torch.device(device)
    tokenizer = CLIPTokenizer(found["vocab"]["file"])
    if spec.test_only:
        cfgs = tiny_configs(tokenizer.vocab_size, variant)
        tokenizer.context_length = cfgs["clip"].context_length
        network = _load_tiny_network(variant, cfgs["network"], found["network"]["file"])
        clip_cfg, sync_cfg = cfgs["clip"], cfgs["synchformer"]
    else:
        network = load_network(spec.network, found["network"]["file"])
        clip_cfg, sync_cfg = None, None
    vae = load_audio_vae(spec.mode, found["vae"]["file"], with_encoder=False)
    vocoder = load_vocoder(spec.mode, found["vocoder"]["file"])
    synchformer = load_synchformer(found["synchformer"]["file"], sync_cfg)
    clip = load_clip(found["clip"]["file"], clip_cfg)
    parts = [m.to(device=device, dtype=dtype).eval() for m in (network, vae, vocoder, synchformer, clip)]
    return MMAudioBundle(spec, *parts, tokenizer=tokenizer, device=device, dtype=dtype, weights=found)


# ---- conditioning frames ------------------------------------------------------------------------------

def _as_uint8_nchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise SampleError(f"frames must be uint8 [T, H, W, 3], got {x.dtype} {list(x.shape)}")
    return x.permute(0, 3, 1, 2).contiguous()


def _bicubic_u8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # torch's uint8 antialiased bicubic is what torchvision's Resize runs on uint8 frames (rounded to uint8).
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def clip_transform(frames_u8: torch.Tensor, size: int) -> torch.Tensor:
    """[T, 3, H, W] uint8 → [T, 3, size, size] float in [0, 1], squashed (aspect not kept), as MMAudio."""
    return _bicubic_u8(frames_u8, (size, size)).float() / 255


def sync_transform(frames_u8: torch.Tensor, size: int) -> torch.Tensor:
    """[T, 3, H, W] uint8 → [T, 3, size, size] float in [0, 1]: short side to `size` (bicubic), centre crop."""
    h, w = frames_u8.shape[-2:]
    new = (int(size * h / w), size) if w <= h else (size, int(size * w / h))
    x = _bicubic_u8(frames_u8, new)
    top, left = round((new[0] - size) / 2.0), round((new[1] - size) / 2.0)
    return x[..., top:top + size, left:left + size].float() / 255


# ---- generation ---------------------------------------------------------------------------------------

@torch.no_grad()
def generate_audio(bundle: MMAudioBundle, frames_uint8: np.ndarray | torch.Tensor, fps: float, prompt: str,
                   duration_s: float, seed: int, steps: int | None = None, cfg_strength: float | None = None,
                   *, negative_prompt: str = "", sampler: str = "euler",
                   callback=None) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Audio for the first `duration_s` seconds of a clip (frames [T, H, W, 3] uint8 at `fps`).

    Returns (wave float32 [round(duration_s · rate)], the model's sample rate, info) where info records
    the conditioning rates, frame counts, the indices of the source frames used, sizes and the sampler.
    `steps` and `cfg_strength` default to the sampler's registry values (25, 4.5). The prompt and
    the negative prompt are encoded with CLIP as MMAudio's demo does (an empty prompt is encoded too).
    The bundle's network is switched to this duration's sequence lengths (`update_seq_lengths`), so one
    bundle serves clips of any length, one at a time."""
    spec = flow_sampler(sampler)
    steps = spec.default_steps if steps is None else int(steps)
    cfg_strength = spec.default_cfg_strength if cfg_strength is None else float(cfg_strength)
    time_grid(steps)  # refuses steps < 1 with the flag's name before any work
    x = _as_uint8_nchw(frames_uint8)
    length_s = x.shape[0] / fps
    if duration_s <= 0 or duration_s > length_s + 1e-6:
        raise SampleError(f"--duration {duration_s:g}: the clip has {x.shape[0]} frames at {fps:g} fps "
                          f"({length_s:.3f} s); choose a duration within it")
    net, rate = bundle.network, bundle.sample_rate
    lengths = sequence_lengths(duration_s, rate)
    times = uniform_times(x.shape[0], fps)
    clip_idx = hold_indices(times, CLIP_FPS, lengths.clip)
    sync_idx = hold_indices(times, SYNC_FPS, int(SYNC_FPS * duration_s))
    clip_size = bundle.clip.config.image_size
    sync_size = bundle.synchformer.config.image_size
    dev, dt = bundle.device, bundle.dtype

    clip_in = bundle.clip.preprocess(clip_transform(x[clip_idx], clip_size)).to(dev, dt)
    clip_f = bundle.clip.encode_image(clip_in, normalize=True)[None]
    sync_f = encode_sync_frames(bundle.synchformer, sync_transform(x[sync_idx], sync_size)[None].to(dev, dt))
    tokens = bundle.tokenizer([prompt, negative_prompt]).to(dev)
    text_f = bundle.clip.encode_text(tokens, normalize=True)

    net.update_seq_lengths(lengths.latent, lengths.clip, lengths.sync)
    cond = net.preprocess_conditions(clip_f, sync_f, text_f[:1])
    empty = net.empty_conditions(1, negative_text=text_f[1:])
    velocity = guided_velocity(lambda t, z: net.predict_flow(z, t, cond),
                               lambda t, z: net.predict_flow(z, t, empty), cfg_strength)
    z0 = prior_noise((1, lengths.latent, net.latent_dim), seed, device=dev, dtype=dt)
    z1 = net.unnormalize(spec(velocity, z0, steps=steps, callback=callback))
    # The VAE and vocoder alone: a MelConverter (what MMAudioAudioCodec adds) is only needed to encode.
    mel = bundle.vae.decode(z1.transpose(1, 2))
    voc = bundle.vocoder(mel)
    voc = voc if isinstance(voc, torch.Tensor) else voc.sample  # diffusers' 44.1 kHz vocoder returns an output object
    wave = voc.float().clamp(-1.0, 1.0).reshape(-1).cpu().numpy()
    n = round(duration_s * rate)
    if wave.shape[0] < n:
        raise SampleError(f"the vocoder gave {wave.shape[0]} samples for {duration_s:g} s at {rate} Hz; "
                          "the VAE/vocoder hop does not match the network's latent rate")
    info = {
        "duration_s": duration_s, "sample_rate": rate, "seed": seed, "steps": steps, "cfg_strength": cfg_strength,
        "sampler": sampler, "time_grid": f"linspace(0, 1, {steps + 1}) float32", "prompt": prompt,
        "negative_prompt": negative_prompt, "source": {"fps": fps, "frames": int(x.shape[0])},
        "sequence_lengths": lengths._asdict(), "frame_rule": "sample-and-hold (avbench.curate.hold)",
        "clip_frames": {"fps": CLIP_FPS, "count": len(clip_idx), "size": clip_size, "indices": clip_idx,
                        "resize": f"bicubic antialiased, squashed to {clip_size}x{clip_size}"},
        "sync_frames": {"fps": SYNC_FPS, "count": len(sync_idx), "size": sync_size, "indices": sync_idx,
                        "resize": f"bicubic antialiased, short side {sync_size}, centre crop"},
        "generated_samples": int(wave.shape[0]),
    }
    return np.ascontiguousarray(wave[:n], dtype=np.float32), rate, info


# ---- what both MMAudio commands write -------------------------------------------------------------------

METRICS_RATE = 16000  # what avbench eval reads


def resample_audio(wave: np.ndarray, rate: int, samples: int, rate_out: int = METRICS_RATE) -> tuple[np.ndarray, int]:
    """Mono audio at `rate` → exactly `samples` samples at `rate_out` (soxr at curation's quality, then
    zero-padded or cut, clipped to [-1, 1]); returns it and how many samples were padded at the end."""
    wave = np.asarray(wave, np.float32).reshape(-1)
    if rate != rate_out:
        wave = soxr.resample(wave, rate, rate_out, quality=SOXR_QUALITY).astype(np.float32)
    pad = max(samples - len(wave), 0)
    if pad:
        wave = np.concatenate([wave, np.zeros(pad, np.float32)])
    return np.clip(wave[:samples], -1.0, 1.0), pad


def write_clip(out: Path, i: int, frames: np.ndarray, wave: np.ndarray, fps: int, rate: int,
               prefix: str = "") -> dict[str, str]:
    """Sample i as `avbench sample` lays it out: {prefix}video/<i>.mp4 (frames + AAC) and
    {prefix}audio/<i>.wav (16-bit PCM); returns the two paths relative to `out`."""
    rel = {"video": f"{prefix}video/{i}.mp4", "audio": f"{prefix}audio/{i}.wav"}
    write_wav(out / rel["audio"], wave, rate)
    write_mp4(out / rel["video"], frames, wave, fps, rate)
    return rel


# ---- the options both MMAudio commands share ------------------------------------------------------------

_EULER = FLOW_SAMPLERS["euler"]
_WEIGHT_FIELDS = {role: flag.removeprefix("--").replace("-", "_") for role, flag in _FLAGS.items()}


def parse_precision(name: str, flag: str) -> torch.dtype:
    """The dtype of a precision name (`avbench.compute`'s spelling), for `--audio-dtype` and CogVideoX's `--dtype`."""
    return compute.torch_dtype(name, flag, SampleError)


def audio_model_field(default: str, why: str):
    """The `--audio-model` field with a command's own default (v2a: small-16k; text2av: large-44k-v2)."""
    return field(default=default, metadata={"help": (
        f"MMAudio variant: {' | '.join(MMAUDIO_VARIANTS)} (tiny-*: test-only random weights). Default: {default} "
        f"({why}). Checkpoints are CC-BY-NC-4.0 (non-commercial); `avbench weights fetch {default}` gets them.")})


@dataclass(kw_only=True)
class MMAudioOptions:
    """The MMAudio options of `avbench sample v2a` and `avbench sample text2av`, written once: the variant,
    where its files are, the Euler steps, CFG, precision and device. Each command's config inherits it
    (kw_only, so the commands' own required fields may follow) and overrides `audio_model`'s default."""

    # metadata["help"] is the help of the generated option, in both commands
    audio_model: str = audio_model_field("mmaudio-small-16k", "the 16 kHz variant, the metrics' rate")
    weights_dir: Path | None = field(default=None, metadata={
        "help": "Folder holding the MMAudio files under their released names ("
                f"{', '.join(MMAUDIO_VARIANTS['mmaudio-small-16k'].filenames.values())} for mmaudio-small-16k). "
                "Default: the avbench cache and the per-file environment variables."})
    network_weights: Path | None = field(default=None, metadata={"help": "The MMAudio flow network (mmaudio_*.pth)."})
    vae_weights: Path | None = field(default=None, metadata={"help": "The audio VAE (v1-16.pth / v1-44.pth)."})
    vocoder_weights: Path | None = field(default=None, metadata={
        "help": "The vocoder: best_netG.pt (16 kHz); for 44.1 kHz variants BigVGAN-v2's bigvgan_generator.pt or a "
                "diffusers MMAudioVocoder folder (default: nvidia/bigvgan_v2_44khz_128band_512x through the HF cache)."})
    synchformer_weights: Path | None = field(default=None, metadata={"help": "synchformer_state_dict.pth."})
    clip_weights: Path | None = field(default=None, metadata={
        "help": "DFN5B-CLIP-ViT-H-14-384 open_clip_pytorch_model.bin."})
    clip_vocab: Path | None = field(default=None, metadata={"help": "CLIP BPE merges (bpe_simple_vocab_16e6.txt.gz)."})
    negative_prompt: str = field(default="", metadata={"help": "MMAudio: text of the unconditional (CFG) branch."})
    audio_steps: int = field(default=_EULER.default_steps, metadata={
        "help": f"MMAudio Euler steps of the flow (MMAudio's: {_EULER.default_steps}).", "min": 1})
    cfg_strength: float = field(default=_EULER.default_cfg_strength, metadata={
        "help": "MMAudio classifier-free guidance s: s·cond + (1-s)·uncond; below 1 the conditional flow alone "
                f"(MMAudio's: {_EULER.default_cfg_strength:g})."})
    audio_dtype: str | None = field(default=None, metadata={
        "help": f"MMAudio precision: {' | '.join(PRECISIONS)}. Default: bf16 on CUDA (MMAudio's demo), fp32 on the CPU."})
    device: str = field(default="auto", metadata={"help": compute.DEVICE_HELP + "."})

    def __post_init__(self) -> None:
        # resolved once, so the precision defaults, the loaders and samples.json all see the real device
        self.device = compute.resolve_device(self.device)

    def validate(self) -> None:
        if self.audio_model not in MMAUDIO_VARIANTS:
            raise SampleError(f"--audio-model {self.audio_model!r}: choose one of {', '.join(MMAUDIO_VARIANTS)}")
        parse_precision(self.resolved_audio_dtype(), "--audio-dtype")
        if self.audio_steps < 1:
            raise SampleError(f"--audio-steps {self.audio_steps}: at least 1")

    def resolved_audio_dtype(self) -> str:
        return resolve_precision(self.audio_dtype, self.device, on_cuda="bf16")  # MMAudio's demo on GPUs

    def weight_paths(self) -> dict[str, Path]:
        """The MMAudio files given explicitly, by role (ROLES)."""
        given = {role: getattr(self, name) for role, name in _WEIGHT_FIELDS.items()}
        return {k: v for k, v in given.items() if v is not None}

    def load_mmaudio(self) -> MMAudioBundle:
        """Every part of the variant, loaded on the (checked) device at the resolved precision."""
        compute.check_device(self.device, error=SampleError)
        return load_bundle(self.audio_model, self.weight_paths(), self.weights_dir, self.device,
                           parse_precision(self.resolved_audio_dtype(), "--audio-dtype"))

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def identity(self, bundle: MMAudioBundle, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The settings that decide the files (resume refuses a folder made with others): every field but
        `skip`, the device and where the weight files lie (their checksums count instead), with the
        resolved precision."""
        dropped = {*skip, "device", "weights_dir", *_WEIGHT_FIELDS.values()}
        d = {k: v for k, v in self.to_dict().items() if k not in dropped}
        d["audio_dtype"] = self.resolved_audio_dtype()
        d["mmaudio_weights_sha256"] = {role: w["sha256"] for role, w in sorted(bundle.weights.items())}
        return d

    def sampler_record(self) -> dict[str, Any]:
        return {"name": "flow-euler", "steps": self.audio_steps, "cfg_strength": self.cfg_strength,
                "time_grid": "linspace(0, 1, steps + 1), t = 0 noise, t = 1 data"}
