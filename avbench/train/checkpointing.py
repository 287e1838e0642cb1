"""Training checkpoints: the complete state of a run, written atomically, pruned, found again on resume.

Layout under the run directory:

    RUN/checkpoints/ckpt-00005000.pt   training state (model, EMA, optimizer, scheduler, scaler, step,
                                       RNG states and data positions of every rank, config, diffusion)
    RUN/model.pt                       the latest sampling checkpoint (`avbench sample --checkpoint`)

A file only ever appears under its final name complete (temp file + fsync + rename), so "the newest
`ckpt-*.pt`" is always a finished checkpoint; a file that still fails to load (a truncated copy, a full
disk elsewhere) is reported and the next older one is used. `keep_last` newest checkpoints are kept,
plus milestones (steps that are multiples of `milestone_every`).

Preemption: SIGTERM (what torchrun and SLURM send first) and SIGUSR1 (SLURM's `--signal`) only set a
flag; the loop finishes the current optimizer step, writes a checkpoint and exits, so the state on
disk is always that of a step boundary.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from avbench.io import atomic_path

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def checkpoint_path(run: Path, step: int) -> Path:
    return checkpoint_dir(run) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run: Path) -> list[tuple[int, Path]]:
    d = checkpoint_dir(run)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """`state` holds only plain types and tensors, so `torch.load(weights_only=True)` reads it back."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise RuntimeError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None


def find_resume(run: Path, resume: str) -> tuple[Path | None, dict[str, Any] | None]:
    """Resolve `--resume`: "none", "auto" (newest loadable checkpoint in RUN, or a fresh start), or a path."""
    if resume in ("", "none", "no"):
        return None, None
    if resume != "auto":
        p = Path(resume)
        if not p.exists():
            raise FileNotFoundError(f"--resume {resume}: no such checkpoint; use --resume auto or a ckpt-*.pt path")
        return p, load_training_state(p)
    for _, p in reversed(list_checkpoints(run)):
        try:
            return p, load_training_state(p)
        except RuntimeError as e:
            print(f"warning: skipping unreadable checkpoint: {e}", file=sys.stderr)
    return None, None


def prune(run: Path, keep_last: int, milestone_every: int) -> list[Path]:
    """Delete all but the `keep_last` newest checkpoints, never a milestone. Returns what was removed."""
    ckpts = list_checkpoints(run)
    keep = {s for s, _ in ckpts[-keep_last:]} if keep_last > 0 else {s for s, _ in ckpts}
    removed = []
    for step, p in ckpts:
        if step in keep or (milestone_every > 0 and step % milestone_every == 0):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class StopFlag:
    """Turns SIGTERM / SIGUSR1 into a flag the loop polls at step boundaries."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopFlag":
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(_to_plain(random.getstate())),
        "numpy": {"key": np_state[0], "state": torch.from_numpy(np_state[1].astype("int64")),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_plain(x):
    return [_to_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x
