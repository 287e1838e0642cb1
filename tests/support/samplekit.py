"""Tiny random-weight checkpoints for the sampling tests (a 32 px, 4-frame MM-UNet and a 32→64 SR U-Net)."""

from __future__ import annotations

from pathlib import Path

import torch

from avbench.diffusion.schedules import DiffusionConfig
from avbench.models.checkpoint import save_checkpoint
from avbench.models.mmunet import MMUNet, MMUNetConfig
from avbench.models.superres import SuperResConfig, SuperResUNet


def tiny_mmunet_config() -> MMUNetConfig:
    return MMUNetConfig.tiny(video_size=(4, 3, 32, 32), audio_size=(1, 6400))


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every weight (the output layers start at zero, which would make ε̂ ≡ 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def make_mmunet_checkpoint(path: Path, *, steps: int = 100, ema: bool = True) -> Path:
    cfg = tiny_mmunet_config()
    model = randomize(MMUNet(cfg), 0)
    ema_state = randomize(MMUNet(cfg), 1).state_dict() if ema else None
    return save_checkpoint(path, model, kind="mmunet", config=cfg, diffusion=DiffusionConfig(steps=steps),
                           ema_state=ema_state, extra={"step": 7, "note": "test"})


def make_sr_checkpoint(path: Path, *, steps: int = 100) -> Path:
    cfg = SuperResConfig.tiny()
    model = randomize(SuperResUNet(cfg), 2)
    return save_checkpoint(path, model, kind="superres", config=cfg,
                           diffusion=DiffusionConfig(steps=steps, variance="learned_range"))
