"""Training checkpoints: the complete state of a run, written atomically, pruned, found again on resume.

Layout under the run directory:

    RUN/checkpoints/ckpt-00005000.pt   training state: one entry per object of the loop's `states` dict
                                       (model, ema, optimizer, scheduler, scaler, train, data, rng) plus
                                       metadata (config, model config, diffusion, world size);
                                       `avbench.checkpoint` owns the file format
    RUN/model.pt                       the latest sampling checkpoint (`avbench sample --checkpoint`)

A file only ever appears under its final name complete (temp file + fsync + rename), and every file's
zip CRCs are checked before it is unpickled. `--resume auto` takes the newest checkpoint that passes;
when a newer one is damaged it says so and falls back; when *every* one is damaged it refuses (it would
otherwise restart at step 0 and overwrite them) and names `--resume none` for a deliberate fresh start.
`keep_last` newest checkpoints are kept, plus milestones (steps that are multiples of `milestone_every`).
A kill during a write can leave a `.tmp-*` file; `clean_temp_files` removes those at start-up.

Preemption: SIGTERM (what torchrun and SLURM send first) and SIGUSR1 (SLURM's `--signal`) only set a
flag; the loop finishes the current optimizer step, writes a checkpoint and exits, so the state on
disk is always that of a step boundary.
"""

from __future__ import annotations

import random
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbench import checkpoint as fmt
from avbench.errors import CheckpointError

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
FRESH_START_HINT = "--resume none"


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


def clean_temp_files(run: Path) -> list[Path]:
    """Remove what a kill during an atomic write left behind (`.tmp-*` in the run's checkpoint folders).

    Only this run's own writers create these names, and start-up is before any write, so nothing
    in flight is removed. Returns the removed paths.
    """
    removed = []
    for d in (checkpoint_dir(run), Path(run), Path(run) / "original"):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith(".tmp-") and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """`state` holds only plain types and tensors, so `torch.load(weights_only=True)` reads it back."""
    fmt.write(path, state)


def load_training_state(path: Path) -> dict[str, Any]:
    """Verified, weights-only read; old-layout files (`avbench-train-v1`) are upgraded to the `states` layout."""
    state = fmt.read(path)
    if not isinstance(state, dict) or state.get("format") not in (fmt.TRAIN_FORMAT, "avbench-train-v1"):
        raise CheckpointError(f"{path}: not an avbench training checkpoint (a sampling checkpoint or another "
                              "file); pass a RUN/checkpoints/ckpt-*.pt file")
    return upgrade_v1(state) if state["format"] == "avbench-train-v1" else state


def upgrade_v1(old: dict[str, Any]) -> dict[str, Any]:
    """The flat layout written before the `states` dict, in the current layout."""
    new = {k: old[k] for k in ("model", "ema", "optimizer", "scheduler", "scaler")}
    new.update(format=fmt.TRAIN_FORMAT, format_version=fmt.TRAIN_FORMAT_VERSION,
               kind=fmt.canonical_kind(old["kind"]), config=old["config"], model_config=old["model_config"],
               diffusion=old["diffusion"], world_size=old.get("world_size", 1))
    new["train"] = {"step": old["step"], "nonfinite_total": old.get("nonfinite_total", 0), "overflow_total": 0}
    new["data"] = {**old["data"], "ranks": old.get("data_ranks") or [old["data"]]}
    new["rng"] = old["rng"]
    return new


@dataclass
class Resume:
    """What `--resume` resolved to: a checkpoint (or None for a fresh start) and what was skipped."""

    path: Path | None = None
    state: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)  # one line per unreadable newer checkpoint


def find_resume(run: Path, resume: str) -> Resume:
    """Resolve `--resume`: "none" (fresh start), "auto" (newest readable checkpoint in RUN), or a path.

    "auto" with no checkpoint at all starts fresh; with checkpoints that are all unreadable it raises
    CheckpointError (exit 2) instead of silently restarting at step 0 over them.
    """
    if resume in ("", "none", "no"):
        return Resume()
    if resume != "auto":
        p = Path(resume)
        if not p.is_file():
            raise fmt.CheckpointNotFoundError(f"--resume {resume}: no such checkpoint; use --resume auto or a ckpt-*.pt path")
        return Resume(p, load_training_state(p))
    found = list(reversed(list_checkpoints(run)))
    skipped = []
    for _, p in found:
        try:
            return Resume(p, load_training_state(p), skipped)
        except CheckpointError as e:
            skipped.append(str(e))
    if found:
        raise CheckpointError(
            f"{checkpoint_dir(run)}: none of the {len(found)} checkpoints is readable (newest: {skipped[0]}); "
            f"resume from a copy with --resume PATH, or start fresh with {FRESH_START_HINT} (which overwrites them)")
    return Resume()


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
