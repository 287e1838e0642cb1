"""What is trained: the network for a config, and its loss on one batch.

- mmunet (`avbench train baseline`): the coupled MM-UNet on (video, audio) windows; uniform t, loss = MSE(ε video) + MSE(ε audio).
- latent (`avbench train latent`): the same MM-UNet on codec latents (`avbench encode`'s shards); the audio
  latent is cropped/padded to the model's length (`LatentMMUNetConfig.fit_audio`) before the same loss.
- superres: the 64→256 U-Net per frame; a few frames of each high-resolution window, the low-resolution
  input made by area-downscaling them (as guided-diffusion's super-resolution training does); hybrid
  loss (MSE + variational bound for the learned variance).

The diffusion math (q_sample, the losses) is `avbench.diffusion`'s; this module only arranges tensors.
Per-sample losses are also bucketed by timestep quartile, as the seed logged them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from avbench.diffusion.gaussian import training_loss
from avbench.diffusion.schedules import DiffusionConfig
from avbench.errors import ConfigError
from avbench.models.mmunet import LatentMMUNetConfig, MMUNet, MMUNetConfig
from avbench.models.superres import SuperResConfig, SuperResUNet
from avbench.train.config import TrainConfig
from avbench.train.data import latent_window_shapes
from avbench.train.throughput import count_training_flops

QUARTILES = 4


def diffusion_config(cfg: TrainConfig) -> DiffusionConfig:
    return DiffusionConfig(
        steps=cfg.diffusion.steps, schedule=cfg.diffusion.schedule,
        variance="learned_range" if cfg.kind == "superres" else "fixed_large",
        rescale_vb=cfg.diffusion.rescale_vb,
    )


def build_model_config(cfg: TrainConfig):
    """The preset named in [model], shaped by [data] (frames, sizes), then [model.overrides]."""
    if cfg.kind == "mmunet":
        Config = MMUNetConfig
        shape = {"video_size": (cfg.data.frames, 3, cfg.data.size, cfg.data.size),
                 "audio_size": (1, cfg.data.frames * 1600)}
    elif cfg.kind == "superres":
        Config = SuperResConfig
        shape = {"large_size": cfg.data.size, "small_size": cfg.data.low_res}
    elif cfg.kind == "latent":
        Config = LatentMMUNetConfig
        shape = {}  # from the latent shards, below: the levels and audio downsampling may be overridden
    else:
        raise ConfigError(f"unknown training kind {cfg.kind!r}; use 'mmunet', 'superres' or 'latent'")
    preset = getattr(Config, cfg.model.preset, None)
    if preset is None or not callable(preset) or cfg.model.preset.startswith("_"):
        raise ConfigError(f"[model] preset {cfg.model.preset!r} is not a {Config.__name__} preset "
                         "(try seed, fixture_small or tiny)")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides.items()}
    known = set(Config.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"[model.overrides] unknown {Config.__name__} field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    model_cfg = replace(preset(), **{**shape, **overrides})
    if cfg.kind == "latent":
        model_cfg = replace(model_cfg, **{**_latent_shape(cfg, model_cfg), **overrides})
    if cfg.train.activation_checkpointing:
        model_cfg = replace(model_cfg, use_checkpoint=True) if "use_checkpoint" in known else model_cfg
    return model_cfg


def _latent_shape(cfg: TrainConfig, model_cfg: LatentMMUNetConfig) -> dict[str, Any]:
    """Sizes, channels, codec and audio crop of the latent MM-UNet from the window shapes of its shards."""
    video, audio = latent_window_shapes(cfg)
    fitted = model_cfg.fitted(video, audio, codec=cfg.data.latents["vae"], pixel_size=cfg.data.latents["size"])
    keys = ("video_size", "audio_size", "video_out_channels", "audio_out_channels", "codec", "pixel_size",
            "audio_latent_length", "audio_crop")
    return {k: getattr(fitted, k) for k in keys}


def build_model(cfg: TrainConfig):
    model_cfg = build_model_config(cfg)
    if cfg.kind in ("mmunet", "latent"):
        model = MMUNet(model_cfg)
    else:
        model = SuperResUNet(model_cfg)
        if cfg.train.activation_checkpointing:
            model.set_gradient_checkpointing(True)
    return model, model_cfg


def quartile_terms(per_sample: torch.Tensor, t: torch.Tensor, steps: int, prefix: str) -> dict[str, torch.Tensor]:
    """Mean loss of the samples whose t falls in each quarter of [0, steps) (0 where a quarter is empty
    in this batch; the logged value is averaged over the log window)."""
    q = (t * QUARTILES // steps).clamp(max=QUARTILES - 1)
    out = {}
    for i in range(QUARTILES):
        mask = (q == i).to(per_sample.dtype)
        out[f"{prefix}_q{i}"] = (per_sample * mask).sum() / mask.sum().clamp(min=1)
    return out


class Objective:
    def __init__(self, cfg: TrainConfig, model_cfg: Any, device: torch.device):
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.device = device
        self.diffusion = diffusion_config(cfg)
        self.schedule = self.diffusion.schedule_obj()

    def samples_per_batch(self, cfg: TrainConfig) -> int:
        return cfg.data.batch_size

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def sample_t(self, n: int) -> torch.Tensor:
        # Drawn on the CPU generator (reseeded every step) so that GPU and CPU runs see the same t.
        return torch.randint(0, self.diffusion.steps, (n,)).to(self.device)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def dummy_batch(self) -> dict[str, torch.Tensor]:
        b, f, s = self.cfg.data.batch_size, self.cfg.data.frames, self.cfg.data.size
        return {"video": torch.zeros(b, f, 3, s, s, device=self.device),
                "audio": torch.zeros(b, 1, f * 1600, device=self.device)}

    def count_flops(self, model, amp_dtype) -> int:
        """Forward + backward FLOPs per training sample (one extra step at start-up, gradients discarded)."""
        batch = self.dummy_batch()

        def step():
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss, _ = self.loss(model, batch)
            loss.backward()

        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            flops = count_training_flops(step)
        model.zero_grad(set_to_none=True)
        return flops // max(self.samples_per_batch(self.cfg), 1)


class JointObjective(Objective):
    """MM-UNet: one shared t per (video, audio) pair."""

    def loss(self, model, batch):
        video, audio = batch["video"], batch["audio"]
        t = self.sample_t(video.shape[0])
        terms = training_loss(lambda xt, tt: model(xt[0], xt[1], tt), (video, audio), t, self.schedule,
                              names=("video", "audio"))
        loss = terms["loss"].mean()
        out = {"loss": loss, "loss_video": terms["mse_video"].mean(), "loss_audio": terms["mse_audio"].mean()}
        out.update(quartile_terms(terms["loss"].detach(), t, self.diffusion.steps, "loss"))
        return loss, out


class SuperResObjective(Objective):
    """SR U-Net: `sr_frames_per_clip` random frames of each window become independent images."""

    def samples_per_batch(self, cfg: TrainConfig) -> int:
        return cfg.data.batch_size * cfg.data.sr_frames_per_clip

    def frames(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        video = batch["video"]  # [B, F, 3, H, W]
        b, f = video.shape[:2]
        k = min(self.cfg.data.sr_frames_per_clip, f)
        idx = torch.stack([torch.randperm(f)[:k] for _ in range(b)]).to(video.device)
        high = torch.gather(video, 1, idx[:, :, None, None, None].expand(-1, -1, *video.shape[2:]))
        high = high.flatten(0, 1)
        low = F.interpolate(high, size=(self.cfg.data.low_res,) * 2, mode="area")
        return high, low

    def loss(self, model, batch):
        high, low = self.frames(batch)
        t = self.sample_t(high.shape[0])
        terms = training_loss(lambda xt, tt: (model(xt[0], tt, low_res=low),), (high,), t, self.schedule,
                              learned_sigma=True, names=("video",), rescale_vb=self.diffusion.rescale_vb)
        loss = terms["loss"].mean()
        out = {"loss": loss, "loss_mse": terms["mse_video"].mean(), "loss_vb": terms["vb_video"].mean()}
        out.update(quartile_terms(terms["loss"].detach(), t, self.diffusion.steps, "loss"))
        return loss, out


class LatentObjective(JointObjective):
    """Latent MM-UNet: the joint loss on (video latent, audio latent fitted to the model's length)."""

    def loss(self, model, batch):
        return super().loss(model, {**batch, "audio": self.model_cfg.fit_audio(batch["audio"])})

    def dummy_batch(self) -> dict[str, torch.Tensor]:
        b, mc = self.cfg.data.batch_size, self.model_cfg
        return {"video": torch.zeros(b, *mc.video_size, device=self.device),
                "audio": torch.zeros(b, mc.audio_size[0], mc.audio_latent_length, device=self.device)}


def make_objective(cfg: TrainConfig, model_cfg: Any, device: torch.device) -> Objective:
    kinds = {"mmunet": JointObjective, "latent": LatentObjective, "superres": SuperResObjective}
    return kinds[cfg.kind](cfg, model_cfg, device)
