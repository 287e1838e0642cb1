"""Sampling checkpoints exported from a run.

- `RUN/model.pt`: avbench's sampling format (`avbench.models.checkpoint.save_checkpoint`: config,
  diffusion settings, raw and EMA weights), refreshed at every training checkpoint, read by
  `avbench sample --checkpoint RUN/model.pt` (EMA weights by default).
- `RUN/original/ema_<decay>_<step>.pt` and `model<step>.pt`: bare state dicts with the original
  MM-Diffusion / guided-diffusion key names and file naming, written at the end of a run, for the
  original code and for tools that expect its layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avbench.io import atomic_path
from avbench.train.config import TrainConfig


def export_sampling_checkpoint(cfg: TrainConfig, model, model_cfg, ema, path: Path, *, step: int) -> Path:
    from avbench.models.checkpoint import save_checkpoint
    from avbench.train.objectives import diffusion_config

    save_checkpoint(
        path, model, kind="mmunet" if cfg.kind == "baseline" else "superres", config=model_cfg,
        diffusion=diffusion_config(cfg).to_dict(), ema_state=ema.state_dict(),
        extra={"step": step, "ema_decay": cfg.ema.decay, "trained_with": "avbench train"},
    )
    return path


def export_original_layout(cfg: TrainConfig, model, ema, out_dir: Path, *, step: int) -> list[Path]:
    files = [(Path(out_dir) / f"ema_{cfg.ema.decay}_{step:06d}.pt", ema.state_dict()),
             (Path(out_dir) / f"model{step:06d}.pt", model.state_dict())]
    for path, sd in files:
        with atomic_path(path) as tmp:
            torch.save({k: v.detach().cpu().float().contiguous() for k, v in sd.items()}, tmp)
    return [p for p, _ in files]
