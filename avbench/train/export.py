"""Sampling checkpoints exported from a run.

- `RUN/model.pt`: avbench's sampling layout (`avbench.checkpoint`: config, diffusion settings, raw and
  EMA weights), refreshed at every training checkpoint, read by
  `avbench sample --checkpoint RUN/model.pt` (EMA weights by default).
- `RUN/original/ema_<decay>_<step>.pt` and `model<step>.pt`: bare state dicts with the original
  MM-Diffusion / guided-diffusion key names and file naming, written at the end of a run, for the
  original code and for tools that expect its layout.

All of them are written by `avbench.checkpoint.write`, so identical runs give identical bytes (and the
sha256 that `avbench sample` records in samples.json is stable).
"""

from __future__ import annotations

from pathlib import Path

from avbench import checkpoint as fmt
from avbench.models.checkpoint import save_checkpoint
from avbench.train.config import TrainConfig
from avbench.train.objectives import diffusion_config


def export_sampling_checkpoint(cfg: TrainConfig, model, model_cfg, ema, path: Path, *, step: int) -> Path:
    return save_checkpoint(
        path, model, kind=cfg.kind, config=model_cfg, diffusion=diffusion_config(cfg).to_dict(),
        ema_state=ema.state_dict(), extra={"step": step, "ema_decay": cfg.ema.decay, "trained_with": "avbench train"},
    )


def export_original_layout(cfg: TrainConfig, model, ema, out_dir: Path, *, step: int) -> list[Path]:
    files = [(Path(out_dir) / f"ema_{cfg.ema.decay}_{step:06d}.pt", ema.state_dict()),
             (Path(out_dir) / f"model{step:06d}.pt", model.state_dict())]
    for path, sd in files:
        fmt.write(path, {k: v.detach().cpu().float().contiguous() for k, v in sd.items()})
    return [p for p, _ in files]
