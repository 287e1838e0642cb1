"""The original MM-Diffusion code's command-line flags, mapped onto avbench's model configs.

A released original checkpoint is a bare state dict; the architecture lived in the shell script's
flags (`ssh_scripts/multimodal_sample_sr.sh`: `--num_channels 128 --cross_attention_windows 1,4,8 ...`).
`avbench sample --original-config FLAGS.json|FLAGS.toml` takes those flags under their original argparse
names (as in `mm_diffusion/multimodal_script_util.py` and, for the upsampler, `script_util.py`'s
`image_sr_*`), so any released checkpoint loads from the CLI. Missing flags take the original's argparse
defaults (`model_and_diffusion_defaults()`), not avbench's presets, because that is what the original
script built when a flag was left out.

Rules of the original reproduced here:
- the middle block has a full-window cross-attention only when `cross_attention_windows` is exactly
  `1,4,8` (`MultimodalUNet.__init__`: `if self.cross_attention_windows == [1,4,8]`);
- `learn_sigma` doubles the output channels (video 3→6, audio 1→2);
- an empty `channel_mult` is chosen from the frame size (64 → 1,2,3,4; 128 → 1,1,2,3,4; 256 → 1,1,2,2,4,4);
- `audio_attention_resolutions -1` (or any non-positive entry) means none;
- the SR model's `channel_mult` always follows `large_size` (the original ignores `sr_channel_mult`).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from avbench.errors import ModelConfigError
from avbench.models.mmunet import MMUNetConfig
from avbench.models.superres import SuperResConfig

# multimodal_script_util.model_and_diffusion_defaults() of researchmm/MM-Diffusion (HEAD 7250222)
MM_DEFAULTS: dict[str, Any] = {
    "video_size": "16,3,64,64", "audio_size": "1,25600", "num_channels": 128, "num_res_blocks": 2,
    "num_heads": 4, "num_heads_upsample": -1, "num_head_channels": -1,
    "cross_attention_resolutions": "2,4,8", "cross_attention_windows": "1,4,8", "cross_attention_shift": True,
    "video_attention_resolutions": "2,4,8", "audio_attention_resolutions": "-1", "channel_mult": "",
    "dropout": 0.0, "class_cond": False, "use_checkpoint": False, "use_scale_shift_norm": True,
    "resblock_updown": False, "use_fp16": False, "video_type": "2d+1d", "audio_type": "1d",
    "learn_sigma": False, "diffusion_steps": 1000, "noise_schedule": "linear", "timestep_respacing": "",
    "use_kl": False, "predict_xstart": False, "rescale_timesteps": False, "rescale_learned_sigmas": False,
}
# script_util.image_sr_model_and_diffusion_defaults()
SR_DEFAULTS: dict[str, Any] = {
    "large_size": 256, "small_size": 128, "sr_num_channels": 128, "sr_num_res_blocks": 2, "sr_num_heads": 4,
    "sr_num_heads_upsample": -1, "sr_num_head_channels": -1, "sr_attention_resolutions": "16,8",
    "sr_channel_mult": "", "sr_dropout": 0.0, "sr_class_cond": False, "use_checkpoint": False,
    "sr_use_scale_shift_norm": True, "sr_resblock_updown": False, "use_fp16": False,
    "sr_use_new_attention_order": False, "sr_learn_sigma": True, "sr_diffusion_steps": 1000,
    "sr_timestep_respacing": "", "noise_schedule": "linear", "use_kl": False, "predict_xstart": False,
    "rescale_timesteps": False, "rescale_learned_sigmas": False,
}
# flags of the original sampling scripts that do not describe the network (paths, batch sizes, samplers)
_IGNORED = {"use_fp16", "use_checkpoint", "timestep_respacing", "sr_timestep_respacing", "num_heads_upsample",
            "use_kl", "rescale_learned_sigmas", "batch_size", "devices", "sample_fn", "sr_sample_fn",
            "all_save_num", "save_type", "is_strict", "output_dir", "ref_path", "multimodal_model_path",
            "sr_model_path", "model_path", "seed", "clip_denoised", "load_noise", "classifier_scale"}
_CHANNEL_MULT = {64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4)}
_SR_CHANNEL_MULT = {64: (1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4), 512: (1, 1, 2, 2, 4, 4)}


def is_flags_file(value: Any) -> bool:
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in (".json", ".toml")


def read_flags(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML table of flags; `--flag` spellings and dashes are accepted (`--num-channels`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelConfigError(f"--original-config {path}: no such file; pass a preset name (seed, fixture_small, "
                               "tiny) or a .json/.toml file of the original code's flags")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ModelConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{path}: expected a table of flag = value pairs")
    return {k.lstrip("-").replace("-", "_"): v for k, v in raw.items()}


def _ints(value: Any, key: str, where: str) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, str):
        items = [s for s in value.replace(" ", "").split(",") if s != ""]
    else:
        raise ModelConfigError(f"{where}: {key} = {value!r} is not a comma-separated list of integers")
    try:
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise ModelConfigError(f"{where}: {key} = {value!r} is not a comma-separated list of integers") from None


def _bool(value: Any, key: str, where: str) -> bool:
    """The original's str2bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("no", "false", "f", "n", "0"):
        return False
    if isinstance(value, int):
        return bool(value)
    raise ModelConfigError(f"{where}: {key} = {value!r} is not a boolean (true/false)")


def _num(value: Any, key: str, where: str, kind=int):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ModelConfigError(f"{where}: {key} = {value!r} is not a number") from None


def _merge(flags: dict[str, Any], defaults: dict[str, Any], where: str, other: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(flags) - set(defaults) - set(other) - _IGNORED)
    if unknown:
        raise ModelConfigError(f"{where}: unknown flag {unknown[0]!r} of the original code (known: "
                               f"{', '.join(sorted(defaults))})")
    return {**defaults, **{k: v for k, v in flags.items() if k in defaults}}


def _diffusion(f: dict[str, Any], steps_key: str, learn_sigma: bool, where: str,
               explicit: set[str]) -> tuple[dict[str, Any], list[str]]:
    notes = []
    if _bool(f["predict_xstart"], "predict_xstart", where):
        raise ModelConfigError(f"{where}: predict_xstart = true (x0-prediction) is not supported; avbench "
                               "samples ε-prediction models only")
    if _bool(f["rescale_timesteps"], "rescale_timesteps", where):
        raise ModelConfigError(f"{where}: rescale_timesteps = true is not supported (the model would see "
                               "timesteps scaled to 0..1000)")
    if f["noise_schedule"] not in ("linear", "cosine"):
        raise ModelConfigError(f"{where}: noise_schedule = {f['noise_schedule']!r} is not one of linear, cosine")
    if steps_key not in explicit:
        notes.append(f"{where}: {steps_key} not given: ASSUMED the original's default 1000")
    diffusion = {"steps": _num(f[steps_key], steps_key, where), "schedule": str(f["noise_schedule"]),
                 "parameterization": "eps", "variance": "learned_range" if learn_sigma else "fixed_large",
                 "learned_sigma": learn_sigma}
    return diffusion, notes


def mmunet_from_flags(flags: dict[str, Any], where: str = "<flags>") -> tuple[MMUNetConfig, dict[str, Any], list[str]]:
    """(MMUNetConfig, diffusion settings as a plain dict, notes) from the original's multimodal flags."""
    f = _merge(flags, MM_DEFAULTS, where, SR_DEFAULTS)
    for key, want in (("video_type", "2d+1d"), ("audio_type", "1d")):
        if f[key] != want:
            raise ModelConfigError(f"{where}: {key} = {f[key]!r} is not supported (only {want!r}, the released models')")
    if not _bool(f["resblock_updown"], "resblock_updown", where):
        raise ModelConfigError(f"{where}: resblock_updown = false builds no upsampling block in the original "
                               "MM-UNet (its output path would not fit); released models use resblock_updown true")
    video_size = _ints(f["video_size"], "video_size", where)
    audio_size = _ints(f["audio_size"], "audio_size", where)
    if len(video_size) != 4 or len(audio_size) != 2:
        raise ModelConfigError(f"{where}: video_size must be F,C,H,W and audio_size C,L (got {video_size}, {audio_size})")
    if f["channel_mult"] in ("", None, []):
        if video_size[-1] not in _CHANNEL_MULT:
            raise ModelConfigError(f"{where}: no default channel_mult for {video_size[-1]} px frames; give channel_mult")
        channel_mult = _CHANNEL_MULT[video_size[-1]]
    else:
        channel_mult = _ints(f["channel_mult"], "channel_mult", where)
    windows = _ints(f["cross_attention_windows"], "cross_attention_windows", where)
    learn_sigma = _bool(f["learn_sigma"], "learn_sigma", where)
    try:
        cfg = MMUNetConfig(
            video_size=video_size, audio_size=audio_size, model_channels=_num(f["num_channels"], "num_channels", where),
            video_out_channels=video_size[1] * (2 if learn_sigma else 1),
            audio_out_channels=audio_size[0] * (2 if learn_sigma else 1),
            num_res_blocks=_num(f["num_res_blocks"], "num_res_blocks", where), channel_mult=channel_mult,
            cross_attention_resolutions=_ints(f["cross_attention_resolutions"], "cross_attention_resolutions", where),
            cross_attention_windows=windows,
            cross_attention_shift=_bool(f["cross_attention_shift"], "cross_attention_shift", where),
            middle_cross_attention=windows == (1, 4, 8),
            video_attention_resolutions=tuple(r for r in _ints(f["video_attention_resolutions"],
                                                               "video_attention_resolutions", where) if r > 0),
            audio_attention_resolutions=tuple(r for r in _ints(f["audio_attention_resolutions"],
                                                               "audio_attention_resolutions", where) if r > 0),
            num_heads=_num(f["num_heads"], "num_heads", where),
            num_head_channels=_num(f["num_head_channels"], "num_head_channels", where),
            dropout=_num(f["dropout"], "dropout", where, float),
            use_scale_shift_norm=_bool(f["use_scale_shift_norm"], "use_scale_shift_norm", where),
        )
        cfg.validate()
    except ValueError as e:
        raise ModelConfigError(f"{where}: these flags do not describe a buildable MM-UNet: {e}") from None
    diffusion, notes = _diffusion(f, "diffusion_steps", learn_sigma, where, set(flags))
    return cfg, diffusion, notes


def superres_from_flags(flags: dict[str, Any], where: str = "<flags>") -> tuple[SuperResConfig, dict[str, Any], list[str]]:
    """(SuperResConfig, diffusion dict, notes) from the original's `image_sr_*` flags (`sr_` prefixed)."""
    f = _merge(flags, SR_DEFAULTS, where, MM_DEFAULTS)
    large = _num(f["large_size"], "large_size", where)
    if large not in _SR_CHANNEL_MULT:
        raise ModelConfigError(f"{where}: large_size {large} is not one the original supports (64, 256, 512)")
    heads_up = _num(f["sr_num_heads_upsample"], "sr_num_heads_upsample", where)
    head_ch = _num(f["sr_num_head_channels"], "sr_num_head_channels", where)
    learn_sigma = _bool(f["sr_learn_sigma"], "sr_learn_sigma", where)
    try:
        cfg = SuperResConfig(
            large_size=large, small_size=_num(f["small_size"], "small_size", where),
            model_channels=_num(f["sr_num_channels"], "sr_num_channels", where),
            num_res_blocks=_num(f["sr_num_res_blocks"], "sr_num_res_blocks", where),
            channel_mult=_SR_CHANNEL_MULT[large],
            attention_ds=_ints(f["sr_attention_resolutions"], "sr_attention_resolutions", where),
            num_heads=_num(f["sr_num_heads"], "sr_num_heads", where),
            num_head_channels=None if head_ch == -1 else head_ch,
            num_heads_upsample=None if heads_up == -1 else heads_up,
            learn_sigma=learn_sigma, dropout=_num(f["sr_dropout"], "sr_dropout", where, float),
            use_scale_shift_norm=_bool(f["sr_use_scale_shift_norm"], "sr_use_scale_shift_norm", where),
            resblock_updown=_bool(f["sr_resblock_updown"], "sr_resblock_updown", where),
            attention_order="qkv_first" if _bool(f["sr_use_new_attention_order"], "sr_use_new_attention_order",
                                                 where) else "legacy",
        )
    except ValueError as e:
        raise ModelConfigError(f"{where}: these flags do not describe a buildable SR U-Net: {e}") from None
    diffusion, notes = _diffusion(f, "sr_diffusion_steps", learn_sigma, where, set(flags))
    return cfg, diffusion, notes


def config_from_flags_file(kind: str, path: str | Path):
    """(config, diffusion dict, notes) for `kind` ("mmunet" | "superres") from a flags file."""
    flags = read_flags(path)
    build = mmunet_from_flags if kind == "mmunet" else superres_from_flags
    return build(flags, str(path))


__all__ = ["MM_DEFAULTS", "SR_DEFAULTS", "config_from_flags_file", "is_flags_file", "mmunet_from_flags",
           "read_flags", "superres_from_flags"]
