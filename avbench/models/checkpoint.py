"""The sampling checkpoint format: what `avbench train` writes and `avbench sample` reads.

A checkpoint is a plain dict (strings, numbers, lists, tensors), so `torch.load(weights_only=True)` reads
it without running any pickled code:

    format          "avbench-checkpoint"
    format_version  1
    kind            "mmunet" | "superres"
    config          the model config as a dict (`<Config>.to_dict()`)
    diffusion       the training diffusion settings (`DiffusionConfig.to_dict()`): steps, schedule,
                    parameterization, variance, learned_sigma
    state_dict      raw weights; `ema_state`: EMA weights or None; `extra`: free-form plain data

The number of training diffusion steps travels with the weights: the seed trained with 2000/100 steps
and sampled with 1000, silently producing garbage. `load_for_sampling` refuses such a mismatch.
Original MM-Diffusion files (bare state dicts) carry no settings, so the caller names the config preset and
the step count; the defaults are recorded as notes, never applied silently.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import torch

from avbench.diffusion.schedules import DiffusionConfig
from avbench.io import atomic_path, sha256_file
from avbench.models.state_dict import clean_state_dict, safe_load

FORMAT = "avbench-checkpoint"
FORMAT_VERSION = 1
KINDS = ("mmunet", "superres")
PRESETS = ("seed", "fixture_small", "tiny")
_PLAIN = (str, int, float, bool, type(None))


def _classes(kind: str):
    if kind == "mmunet":
        from avbench.models.mmunet import MMUNet, MMUNetConfig

        return MMUNet, MMUNetConfig
    if kind == "superres":
        from avbench.models.superres import SuperResConfig, SuperResUNet

        return SuperResUNet, SuperResConfig
    raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")


def _config_dict(config: Any) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if is_dataclass(config):
        from dataclasses import asdict

        return asdict(config)
    raise TypeError(f"config must be a model config dataclass or a dict, got {type(config).__name__}")


def _check_plain(obj: Any, where: str) -> None:
    """`extra` must survive weights_only loading: plain types and tensors only."""
    if isinstance(obj, _PLAIN) or isinstance(obj, torch.Tensor):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"{where}: {type(obj).__name__} is not storable in a weights-only checkpoint; "
                    "convert it to str/int/float/bool/list/dict or a tensor")


def _cpu_weights(sd: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in clean_state_dict(sd).items()}


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, kind: str, config: Any,
                    diffusion: dict | DiffusionConfig, ema_state: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write a sampling checkpoint atomically. `model` may be wrapped (DDP, torch.compile)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    dcfg = diffusion if isinstance(diffusion, DiffusionConfig) else DiffusionConfig.from_dict(diffusion)
    if kind == "superres" and not dcfg.learned_sigma and getattr(config, "learn_sigma", False):
        raise ValueError("a learn_sigma super-resolution model needs diffusion variance 'learned_range'")
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    module = getattr(model, "module", model)
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": _config_dict(config),
        "diffusion": dcfg.to_dict(),
        "state_dict": _cpu_weights(module.state_dict()),
        "ema_state": _cpu_weights(ema_state) if ema_state is not None else None,
        "extra": extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def is_avbench_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def detect_original_kind(sd: dict[str, torch.Tensor]) -> str:
    """MM-UNet files have `video_out.*`/`audio_out.*` heads; the SR U-Net has a single `out.*` head."""
    if any(k.startswith("video_out.") for k in sd) and any(k.startswith("audio_out.") for k in sd):
        return "mmunet"
    if "out.2.weight" in sd and "input_blocks.0.0.weight" in sd:
        return "superres"
    raise ValueError("not an MM-Diffusion MM-UNet or super-resolution state dict (no video_out/audio_out or "
                     "out.2 head); pass an avbench checkpoint written by `avbench train`")


def _preset(kind: str, preset: Any):
    _, Config = _classes(kind)
    if preset is None:
        return Config.seed()
    if isinstance(preset, Config):
        return preset
    if isinstance(preset, dict):
        return Config.from_dict(preset)
    if isinstance(preset, str) and preset in PRESETS:
        return getattr(Config, preset)()
    raise ValueError(f"unknown {kind} config preset {preset!r}; choose one of {', '.join(PRESETS)}")


def _build(kind: str, cfg: Any, weights: dict[str, torch.Tensor], where: str) -> torch.nn.Module:
    Model, _ = _classes(kind)
    with torch.device("meta"):  # shapes only: a mismatch is found without allocating a full model
        expected = {k: tuple(v.shape) for k, v in Model(cfg).state_dict().items()}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise ValueError(
            f"{where}: weights do not fit the {kind} config ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} wrongly shaped tensors, e.g. {example!r}); for original MM-Diffusion files pass the "
            "matching --original-config preset")
    model = Model(cfg)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def load_for_sampling(path: str | Path, *, prefer_ema: bool = True, original_config: Any = None,
                      diffusion_steps: int | None = None, device: str | torch.device = "cpu",
                      expect_kind: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a model in eval mode plus `info` (what was loaded, with which settings, and notes).

    Accepts an avbench checkpoint or an original MM-Diffusion state-dict file (`module.`-prefixed or
    wrapped ones too). For an avbench checkpoint, `diffusion_steps` (if given) must equal the stored
    number of training steps. For an original file, `original_config` is a preset name (`seed`,
    `fixture_small`, `tiny`), a config or a dict, and `diffusion_steps` the training step count; missing
    ones default to the seed preset and 1000 linear steps, and `info["notes"]` says so.
    """
    path = Path(path)
    try:
        obj = safe_load(path)
    except RuntimeError as e:  # unreadable or unsafe file: already a one-line message naming it
        raise ValueError(str(e)) from None
    notes: list[str] = []
    if is_avbench_checkpoint(obj):
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format version {version} is not supported (this avbench reads "
                             f"version {FORMAT_VERSION}); upgrade avbench or re-export the checkpoint")
        kind = obj["kind"]
        dcfg = DiffusionConfig.from_dict(obj["diffusion"])
        if diffusion_steps is not None and int(diffusion_steps) != dcfg.steps:
            raise ValueError(f"{path}: the model was trained with {dcfg.steps} diffusion steps but "
                             f"{diffusion_steps} were requested; sampling must use the training schedule "
                             "(drop --diffusion-steps; use --steps to choose the number of sampling steps)")
        if original_config is not None:
            raise ValueError(f"{path}: --original-config only applies to original MM-Diffusion files; "
                             "this avbench checkpoint stores its own config")
        _, Config = _classes(kind)
        cfg = Config.from_dict(obj["config"])
        use_ema = prefer_ema and obj.get("ema_state") is not None
        weights = clean_state_dict(obj["ema_state"] if use_ema else obj["state_dict"])
        if prefer_ema and not use_ema:
            notes.append("checkpoint has no EMA weights; using the raw weights")
        source, extra = "avbench", obj.get("extra") or {}
    else:
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
        weights = clean_state_dict(obj)
        kind = detect_original_kind(weights)
        if original_config is None:
            notes.append(f"original MM-Diffusion file without settings: assumed the seed {kind} config "
                         "(pass --original-config to choose another preset)")
        cfg = _preset(kind, original_config)
        if diffusion_steps is None:
            notes.append("original MM-Diffusion file without settings: ASSUMED 1000 linear training diffusion "
                         "steps; if the model was trained with another count, pass --diffusion-steps")
        variance = "learned_range" if kind == "superres" and getattr(cfg, "learn_sigma", False) else "fixed_large"
        dcfg = DiffusionConfig(steps=int(diffusion_steps or 1000), schedule="linear", variance=variance)
        use_ema, source, extra = None, "mm-diffusion", {}
    if expect_kind is not None and kind != expect_kind:
        raise ValueError(f"{path}: holds a {kind} model, expected {expect_kind}")
    model = _build(kind, cfg, weights, str(path)).to(device)
    info = {
        "path": str(path),
        "sha256": sha256_file(path),
        "source": source,
        "kind": kind,
        "config": _config_dict(cfg),
        "diffusion": dcfg.to_dict(),
        "weights": {True: "ema", False: "raw", None: "as stored"}[use_ema],
        "extra": extra,
        "notes": notes,
    }
    return model, info
