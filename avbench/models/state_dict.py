"""Reading model weights safely: weights-only loading, key clean-up and strict loading.

Released MM-Diffusion files are plain state dicts (`model*.pt`, `ema_0.9999_*.pt`), sometimes
saved from a DDP wrapper (`module.` prefix). Other trainers wrap them in a dict
(`{"state_dict": …}`, `{"ema": …}`, `{"model": …}`). Files are only ever read with
`torch.load(weights_only=True)`: a pickle that needs arbitrary code is refused, never run (the reading
itself, with its integrity check, is `avbench.checkpoint.read`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from avbench import checkpoint as fmt
from avbench.checkpoint import UnsafeCheckpointError
from avbench.errors import CheckpointError

__all__ = [
    "UnsafeCheckpointError",
    "clean_state_dict",
    "compare_to_listing",
    "load_strict",
    "mismatch",
    "safe_load",
    "seeded_state_dict",
]

# Wrapper keys, most specific first: an EMA copy is what sampling wants when a file holds both.
_WRAPPER_KEYS = ("ema_state_dict", "ema", "ema_model", "state_dict", "model_state_dict", "model", "params")


def safe_load(path: str | Path, map_location: str | torch.device = "cpu"):
    """torch.load(weights_only=True) after checking the zip records' CRCs (`avbench.checkpoint.read`).

    A file that would need arbitrary unpickling raises UnsafeCheckpointError; a missing, truncated or
    damaged one a one-line CheckpointError naming it.
    """
    return fmt.read(path, map_location=map_location)


def _unwrap(sd: Mapping) -> Mapping:
    if any(isinstance(v, torch.Tensor) for v in sd.values()):
        return sd
    for key in _WRAPPER_KEYS:
        inner = sd.get(key)
        if isinstance(inner, Mapping) and inner:
            return _unwrap(inner)
    return sd


def clean_state_dict(sd: Mapping) -> dict[str, torch.Tensor]:
    """Plain `{name: tensor}` from a raw, DDP-prefixed or EMA-wrapped state dict.

    Strips any number of leading `module.` (DDP/DataParallel) and `_orig_mod.` (torch.compile)
    prefixes, unwraps `{"ema": …}` / `{"state_dict": …}`-style containers (EMA first) and drops
    non-tensor entries (step counters, configs).
    """
    sd = _unwrap(sd)
    out: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        while True:
            for prefix in ("module.", "_orig_mod."):
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            else:
                break
        if name in out:
            raise ValueError(f"state dict has key {name!r} twice after prefix stripping")
        out[name] = value
    return out


def compare_to_listing(sd: Mapping[str, torch.Tensor], listing: list) -> list[str]:
    """Differences between a state dict and a `[[key, shape], …]` listing (empty list: identical)."""
    problems = []
    want = {k: list(s) for k, s in listing}
    for k, s in want.items():
        if k not in sd:
            problems.append(f"missing {k} {s}")
        elif list(sd[k].shape) != s:
            problems.append(f"shape {k}: have {list(sd[k].shape)}, want {s}")
    problems += [f"unexpected {k} {list(sd[k].shape)}" for k in sd if k not in want]
    return problems


def mismatch(sd: Mapping[str, torch.Tensor], want: Mapping[str, Sequence[int]], first: int = 3) -> str:
    """'' when `sd` has exactly `want`'s keys and shapes; otherwise one clause with the count and the
    first few keys of each kind: "2 missing (first: a, b); 1 wrong shape (first: c [4]≠[8])"."""
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {list(sd[k].shape)}≠{list(s)}" for k, s in want.items()
              if k in sd and tuple(sd[k].shape) != tuple(s)]
    return "; ".join(f"{len(v)} {kind} (first: {', '.join(v[:first])})" for kind, v in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if v)


def load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], path: str | Path, what: str,
                fix: str | Callable[[], str], *, dtype: torch.dtype | None = None,
                refresh: Callable[[], None] | None = None) -> nn.Module:
    """Assign a checked state dict to `module` (typically built on the meta device, so no random init
    is paid for and no second copy of the weights is made); returns `module`.

    Any key or shape difference is one CheckpointError line: "<path>: not <what> (<mismatch>); <fix>".
    `fix` may be a callable, run only on a mismatch (a hint that costs work, such as which other
    variant the file fits). `dtype` casts floating tensors first; `refresh` recomputes non-persistent
    tables after the assignment. A tensor still on the meta device afterwards is a bug of the module's
    loader, not of the file, so it is a RuntimeError.
    """
    problem = mismatch(sd, {k: v.shape for k, v in module.state_dict().items()})
    if problem:
        raise CheckpointError(f"{path}: not {what} ({problem}); {fix() if callable(fix) else fix}")
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    module.load_state_dict(sd, strict=True, assign=True)
    if refresh is not None:
        refresh()
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{what}: tensors not filled by the state dict: {left[:3]}")
    return module


def seeded_state_dict(state_dict: Mapping[str, torch.Tensor], seed: int) -> tuple[dict, torch.Generator]:
    """The parity fixtures' seeded-weight recipe (shared/fixtures/mmdiffusion/README.md).

    Keys in plain string order, one float64 normal draw each from one generator: matrices and
    kernels scaled by 1/sqrt(fan_in), 1-d weights 1 + 0.1·x, 1-d biases 0.1·x. Returns the new
    float32 state dict and the generator, from which the fixture inputs are drawn next.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(state_dict):
        shape = tuple(state_dict[name].shape)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        if len(shape) >= 2:
            x = x / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("weight"):
            x = 1 + 0.1 * x
        else:
            x = 0.1 * x
        out[name] = x.float()
    return out, g
