"""The checkpoint file format, shared by `avbench train` (writer) and `avbench sample` (reader).

This is a bottom-layer module: it knows file bytes, the registry of model kinds and the dict layout,
never the model classes or the diffusion code (those build objects *from* what this module reads).

Every checkpoint is a `torch.save` zip of plain data (str, int, float, bool, None, lists, dicts, tensors),
so `torch.load(weights_only=True)` reads it without running pickled code. Two layouts:

    sampling (`RUN/model.pt`)       format "avbench-checkpoint", format_version 1, kind, config (model
                                    config dict), diffusion (plain dict: steps, schedule, variance, ...),
                                    state_dict, ema_state (or None), extra (plain data)
    training (`ckpt-*.pt`)          format "avbench-train", format_version 2, kind, config (the TrainConfig
                                    dict), model_config, diffusion, world_size, plus one entry per object
                                    of the trainer's `states` dict (model, ema, optimizer, ...)

Bytes are reproducible: the archive is written through an open file handle, so its record prefix is the
fixed name "archive" rather than the random temp-file name, and identical runs give identical files.
Integrity is checked before unpickling: every zip record carries a CRC-32 that `torch.load` never
verifies; `read` does, so a flipped byte inside a tensor is refused instead of loaded as garbage.

torch is imported on first use, not at the top: the kind registry is read by the training config,
which `avbench --help` imports to generate its options.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from avbench.errors import CheckpointError
from avbench.io import atomic_path

FORMAT = "avbench-checkpoint"
FORMAT_VERSION = 1
TRAIN_FORMAT = "avbench-train"
TRAIN_FORMAT_VERSION = 2
_OLD_TRAIN_FORMAT = "avbench-train-v1"  # written before the `states` layout; still read
_PLAIN = (str, int, float, bool, type(None))

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelKind:
    name: str
    description: str
    aliases: tuple[str, ...] = ()
    # the diffusion variance a model of this kind was trained with when a file does not say
    default_variance: str = "fixed_large"


# The one registry of model kinds. Old spellings are accepted when reading; only `name` is written.
KINDS: dict[str, ModelKind] = {
    "mmunet": ModelKind("mmunet", "coupled audio-video MM-UNet (MM-Diffusion)", aliases=("baseline",)),
    "superres": ModelKind("superres", "64→256 super-resolution U-Net", aliases=("sr",),
                          default_variance="learned_range"),
    "latent": ModelKind("latent", "MM-UNet on video/audio VAE latents, decoded by the codec its config names"),
}
_ALIASES = {alias: k.name for k in KINDS.values() for alias in (k.name, *k.aliases)}


class UnknownKindError(CheckpointError, ValueError):
    """A model kind that is not in `KINDS`."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs arbitrary unpickling (weights_only=True refused it)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the given path."""


def canonical_kind(name: str, where: str = "") -> str:
    """`baseline` → `mmunet`; an unknown name is an error listing the known ones."""
    try:
        return _ALIASES[name]
    except (KeyError, TypeError):
        prefix = f"{where}: " if where else ""
        raise UnknownKindError(f"{prefix}unknown model kind {name!r}; choose one of {', '.join(KINDS)}") from None


# ---- bytes on disk --------------------------------------------------------------------------------

def check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless `obj` survives weights-only loading (plain types, tensors, containers)."""
    import torch

    if isinstance(obj, (*_PLAIN, torch.Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: keys must be strings or ints, got {k!r}")
            check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"{where}: {type(obj).__name__} is not storable in a weights-only checkpoint; "
                    "convert it to str/int/float/bool/list/dict or a tensor")


def write(path: str | Path, obj: Any) -> Path:
    """torch.save `obj` atomically with reproducible bytes (see the module docstring)."""
    import torch

    path = Path(path)
    # a handle, not the path: the archive's record prefix stays "archive", not the random temp name
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
    return path


def verify(path: str | Path) -> None:
    """Check every zip record's CRC-32; a damaged file raises CheckpointError naming it.

    Files in torch's legacy (pre-1.6, non-zip) format carry no checksums; they pass unchecked, and a
    truncated zip is no longer recognisable as one, so `read` reports it when unpickling fails.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e}); use an older checkpoint "
                              "or copy the file again") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint: record {bad!r} fails its CRC-32 check (bytes changed "
                              "on disk or in a copy); use an older checkpoint or copy the file again")


def read(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Verify, then torch.load(weights_only=True). Every failure is one CheckpointError line naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file; check the path")
    verify(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch wraps every weights-only failure in an UnpicklingError
        msg = str(e)
        found = re.search(r"GLOBAL (\S+)", msg)
        if found or "Unsupported global" in msg or "Unsupported class" in msg:
            what = f" ({found.group(1)})" if found else ""
            raise UnsafeCheckpointError(
                f"{path}: refused to load, the file needs arbitrary unpickling{what}; only plain "
                "tensor checkpoints are read (weights_only=True): re-save it as a dict of tensors, "
                "e.g. torch.save(model.state_dict(), ...)"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}); "
                              "the file is truncated or not a torch.save file") from None


# ---- the sampling layout --------------------------------------------------------------------------

@dataclass
class SamplingCheckpoint:
    """What sampling needs from any avbench file (a `model.pt` or a training checkpoint)."""

    kind: str
    config: dict[str, Any]
    diffusion: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = "sampling"  # "sampling" | "training" | "training-v1"


def sampling_payload(*, kind: str, config: dict[str, Any], diffusion: Mapping[str, Any],
                     state_dict: Mapping[str, torch.Tensor], ema_state: Mapping[str, torch.Tensor] | None,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sampling-checkpoint dict; weights are copied to contiguous CPU tensors."""
    kind = canonical_kind(kind)
    diffusion = dict(diffusion)
    extra = dict(extra or {})
    check_plain(extra, "extra")
    check_plain(config, "config")
    check_plain(diffusion, "diffusion")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": dict(config),
        "diffusion": diffusion,
        "state_dict": cpu_weights(state_dict),
        "ema_state": cpu_weights(ema_state) if ema_state is not None else None,
        "extra": extra,
    }


def cpu_weights(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in sd.items() if hasattr(v, "detach")}


def is_avbench(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") in (FORMAT, TRAIN_FORMAT, _OLD_TRAIN_FORMAT)


def as_sampling(obj: dict[str, Any], where: str) -> SamplingCheckpoint:
    """Normalise any avbench layout (sampling, training, the old training one) for sampling."""
    fmt, version = obj.get("format"), obj.get("format_version")
    if fmt == FORMAT:
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{where}: checkpoint format version {version} is not supported (this avbench "
                                  f"reads version {FORMAT_VERSION}); upgrade avbench or re-export the checkpoint")
        kind = canonical_kind(obj["kind"], where)
        return SamplingCheckpoint(kind, dict(obj["config"]), dict(obj["diffusion"]), obj["state_dict"],
                                  obj.get("ema_state"), dict(obj.get("extra") or {}))
    if fmt in (TRAIN_FORMAT, _OLD_TRAIN_FORMAT):
        if fmt == TRAIN_FORMAT and version != TRAIN_FORMAT_VERSION:
            raise CheckpointError(f"{where}: training checkpoint format version {version} is not supported "
                                  f"(this avbench reads version {TRAIN_FORMAT_VERSION}); upgrade avbench")
        kind = canonical_kind(obj["kind"], where)
        diffusion = {"variance": KINDS[kind].default_variance, **dict(obj.get("diffusion") or {})}
        step = obj["train"]["step"] if fmt == TRAIN_FORMAT else obj.get("step")
        return SamplingCheckpoint(kind, dict(obj["model_config"]), diffusion, obj["model"], obj.get("ema"),
                                  {"step": step}, layout="training" if fmt == TRAIN_FORMAT else "training-v1")
    raise CheckpointError(f"{where}: not an avbench checkpoint (format {fmt!r})")


# ---- the training layout --------------------------------------------------------------------------

class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


TRAIN_META = ("format", "format_version", "kind", "config", "model_config", "diffusion", "world_size")


def training_payload(states: Mapping[str, Stateful], meta: Mapping[str, Any]) -> dict[str, Any]:
    """{meta..., name: obj.state_dict() for each state}; the one place the state keys are enumerated."""
    clash = sorted(set(states) & set(TRAIN_META))
    if clash:
        raise ValueError(f"state names {clash} collide with checkpoint metadata keys")
    unknown = sorted(set(meta) - set(TRAIN_META))
    if unknown:
        raise ValueError(f"unknown checkpoint metadata keys {unknown}")
    payload = {"format": TRAIN_FORMAT, "format_version": TRAIN_FORMAT_VERSION, **meta}
    payload["kind"] = canonical_kind(payload["kind"])
    payload.update({name: obj.state_dict() for name, obj in states.items()})
    return payload


def load_states(payload: Mapping[str, Any], states: Mapping[str, Stateful], where: str) -> None:
    """Call `load_state_dict` on every state object with its entry of `payload`."""
    missing = [name for name in states if name not in payload]
    if missing:
        raise CheckpointError(f"{where}: the checkpoint has no {', '.join(missing)} state; it was not written "
                              "by this trainer (start fresh with --resume none or pass another checkpoint)")
    for name, obj in states.items():
        obj.load_state_dict(payload[name])
