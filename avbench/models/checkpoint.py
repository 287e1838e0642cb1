"""Models from checkpoint files: build an MM-UNet or SR U-Net in eval mode from what a file holds.

The file format itself (layouts, kinds, integrity, reproducible bytes) is `avbench.checkpoint`'s; this
module adds what needs the model classes: the config dataclass per kind, shape checks on a meta-device
model, and original MM-Diffusion files (bare state dicts), whose architecture comes from
`--original-config` (a preset name, a config, or a JSON/TOML file of the original code's flags,
`avbench.models.original_flags`).

Diffusion settings travel as a plain dict (steps, schedule, variance, ...): models never import the
noise side; `avbench.sample` turns the dict into a `DiffusionConfig`. The number of training diffusion
steps travels with the weights: the seed trained with 2000/100 steps and sampled with 1000, silently
producing garbage, so `load_for_sampling` refuses a mismatch.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from avbench import checkpoint as fmt
from avbench.errors import CheckpointError, ModelConfigError
from avbench.io import sha256_file
from avbench.models.mmunet import LatentMMUNetConfig, MMUNet, MMUNetConfig
from avbench.models.original_flags import config_from_flags_file, is_flags_file
from avbench.models.state_dict import clean_state_dict
from avbench.models.superres import SuperResConfig, SuperResUNet

FORMAT = fmt.FORMAT
KINDS = tuple(fmt.KINDS)
PRESETS = ("seed", "fixture_small", "tiny")
# kind → (model class, config class); the kind names are avbench.checkpoint.KINDS'
MODEL_CLASSES: dict[str, tuple[type[torch.nn.Module], type]] = {
    "mmunet": (MMUNet, MMUNetConfig),
    "superres": (SuperResUNet, SuperResConfig),
    "latent": (MMUNet, LatentMMUNetConfig),  # the MM-UNet itself; its config adds the codec and audio layout
}
assert set(MODEL_CLASSES) == set(fmt.KINDS), "every registered kind needs its classes"


def _config_dict(config: Any) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if is_dataclass(config):
        return asdict(config)
    raise TypeError(f"config must be a model config dataclass or a dict, got {type(config).__name__}")


def _diffusion_dict(diffusion: Any) -> dict[str, Any]:
    """A DiffusionConfig (anything with to_dict) or a dict; models do not import the diffusion package."""
    return dict(diffusion.to_dict() if hasattr(diffusion, "to_dict") else diffusion)


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, kind: str, config: Any,
                    diffusion: Any, ema_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a sampling checkpoint atomically (reproducible bytes). `model` may be wrapped (DDP, compile)."""
    kind = fmt.canonical_kind(kind)
    diffusion = _diffusion_dict(diffusion)
    learned = diffusion.get("variance") == "learned_range"
    if kind == "superres" and not learned and getattr(config, "learn_sigma", False):
        raise ValueError("a learn_sigma super-resolution model needs diffusion variance 'learned_range'")
    module = getattr(model, "module", model)
    payload = fmt.sampling_payload(
        kind=kind, config=_config_dict(config), diffusion=diffusion,
        state_dict=clean_state_dict(module.state_dict()),
        ema_state=clean_state_dict(ema_state) if ema_state is not None else None, extra=extra)
    return fmt.write(path, payload)


def detect_original_kind(sd: dict[str, torch.Tensor]) -> str:
    """MM-UNet files have `video_out.*`/`audio_out.*` heads; the SR U-Net has a single `out.*` head."""
    if any(k.startswith("video_out.") for k in sd) and any(k.startswith("audio_out.") for k in sd):
        return "mmunet"
    if "out.2.weight" in sd and "input_blocks.0.0.weight" in sd:
        return "superres"
    raise CheckpointError("not an MM-Diffusion MM-UNet or super-resolution state dict (no video_out/audio_out or "
                          "out.2 head); pass an avbench checkpoint written by `avbench train`")


def _original_config(kind: str, original: Any) -> tuple[Any, dict[str, Any] | None, list[str]]:
    """(config, diffusion dict from a flags file or None, notes)."""
    _, Config = MODEL_CLASSES[kind]
    if original is None:
        note = (f"original MM-Diffusion file without settings: assumed the seed {kind} config "
                "(pass --original-config to choose a preset or a flags file)")
        return Config.seed(), None, [note]
    if isinstance(original, Config):
        return original, None, []
    if isinstance(original, dict):
        return Config.from_dict(original), None, []
    if isinstance(original, str) and original in PRESETS:
        return getattr(Config, original)(), None, []
    if is_flags_file(original):
        return config_from_flags_file(kind, original)
    raise ModelConfigError(f"unknown {kind} --original-config {original!r}; choose a preset ({', '.join(PRESETS)}) "
                           "or a .json/.toml file of the original code's flags (e.g. num_channels, "
                           "cross_attention_windows)")


def build_model(kind: str, cfg: Any, weights: dict[str, torch.Tensor], where: str) -> torch.nn.Module:
    """The model of `kind` with `weights` loaded strictly, in eval mode; a misfit is one line."""
    Model, _ = MODEL_CLASSES[kind]
    with torch.device("meta"):  # shapes only: a mismatch is found without allocating a full model
        expected = {k: tuple(v.shape) for k, v in Model(cfg).state_dict().items()}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise CheckpointError(
            f"{where}: weights do not fit the {kind} config ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} wrongly shaped tensors, e.g. {example!r}); for original MM-Diffusion files pass the "
            "matching --original-config preset or flags file")
    model = Model(cfg)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def load_for_sampling(path: str | Path, *, prefer_ema: bool = True, original_config: Any = None,
                      diffusion_steps: int | None = None, device: str | torch.device = "cpu",
                      expect_kind: str | tuple[str, ...] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a model in eval mode plus `info` (what was loaded, with which settings, and notes).

    Accepts an avbench sampling checkpoint (`RUN/model.pt`), an avbench training checkpoint
    (`ckpt-*.pt`, also those of older versions whose kind was called "baseline"), or an original
    MM-Diffusion state-dict file (`module.`-prefixed or wrapped ones too). For avbench files,
    `diffusion_steps` (if given) must equal the stored number of training steps. For an original file,
    `original_config` is a preset name (`seed`, `fixture_small`, `tiny`), a config, a dict of config
    fields, or the path of a .json/.toml file of the original code's flags; `diffusion_steps` is the
    training step count. Values neither given nor in a flags file default to the seed preset and 1000
    linear steps, and `info["notes"]` says so. `info["diffusion"]` is a plain dict.
    """
    path = Path(path)
    obj = fmt.read(path)
    notes: list[str] = []
    if fmt.is_avbench(obj):
        ck = fmt.as_sampling(obj, str(path))
        kind, diffusion = ck.kind, ck.diffusion
        if diffusion_steps is not None and int(diffusion_steps) != int(diffusion["steps"]):
            raise CheckpointError(f"{path}: the model was trained with {diffusion['steps']} diffusion steps but "
                                  f"{diffusion_steps} were requested; sampling must use the training schedule "
                                  "(drop --diffusion-steps; use --steps to choose the number of sampling steps)")
        if original_config is not None:
            raise ModelConfigError(f"{path}: --original-config only applies to original MM-Diffusion files; "
                                   "this avbench checkpoint stores its own config")
        _, Config = MODEL_CLASSES[kind]
        cfg = Config.from_dict(ck.config)
        use_ema = prefer_ema and ck.ema_state is not None
        weights = clean_state_dict(ck.ema_state if use_ema else ck.state_dict)
        if prefer_ema and not use_ema:
            notes.append("checkpoint has no EMA weights; using the raw weights")
        source, extra = "avbench", ck.extra
    else:
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
        weights = clean_state_dict(obj)
        try:
            kind = detect_original_kind(weights)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        cfg, flag_diffusion, cfg_notes = _original_config(kind, original_config)
        notes += cfg_notes
        if flag_diffusion is not None:
            steps_assumed = any("ASSUMED" in n for n in cfg_notes)  # the file has no diffusion_steps flag
            if diffusion_steps is not None and steps_assumed:
                flag_diffusion = {**flag_diffusion, "steps": int(diffusion_steps)}
                notes = [n for n in notes if "ASSUMED" not in n]
            elif diffusion_steps is not None and int(diffusion_steps) != flag_diffusion["steps"]:
                raise ModelConfigError(f"--diffusion-steps {diffusion_steps} contradicts the flags file "
                                       f"{original_config} ({flag_diffusion['steps']} steps); give one of them")
            diffusion = flag_diffusion
        else:
            if diffusion_steps is None:
                notes.append("original MM-Diffusion file without settings: ASSUMED 1000 linear training diffusion "
                             "steps; if the model was trained with another count, pass --diffusion-steps")
            variance = "learned_range" if kind == "superres" and getattr(cfg, "learn_sigma", False) else "fixed_large"
            diffusion = {"steps": int(diffusion_steps or 1000), "schedule": "linear", "parameterization": "eps",
                         "variance": variance, "learned_sigma": variance == "learned_range"}
        use_ema, source, extra = None, "mm-diffusion", {}
    expected = [fmt.canonical_kind(k) for k in ((expect_kind,) if isinstance(expect_kind, str) else expect_kind or ())]
    if expected and kind not in expected:
        raise CheckpointError(f"{path}: holds a {kind} model, expected {' or '.join(expected)}")
    model = build_model(kind, cfg, weights, str(path)).to(device)
    info = {
        "path": str(path),
        "sha256": sha256_file(path),
        "source": source,
        "kind": kind,
        "config": _config_dict(cfg),
        "diffusion": dict(diffusion),
        "weights": {True: "ema", False: "raw", None: "as stored"}[use_ema],
        "extra": extra,
        "notes": notes,
    }
    return model, info
