"""Diffusion math: schedules, the forward process and losses, timestep respacing, samplers, and zero-shot
conditional generation. Pure functions over tensors (tuples of tensors for joint models)."""

from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.gaussian import q_sample, training_loss
from avbench.diffusion.respace import respaced, space_timesteps
from avbench.diffusion.samplers import SAMPLERS, Prediction, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_dpmpp_3s
from avbench.diffusion.schedules import DiffusionConfig, Schedule

__all__ = [
    "SAMPLERS", "DiffusionConfig", "Prediction", "Schedule", "q_sample", "replacement_model_fn", "respaced",
    "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_3s", "space_timesteps", "training_loss",
]
