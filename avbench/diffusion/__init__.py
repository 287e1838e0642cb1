"""Diffusion math: schedules, the forward process and losses, timestep respacing, denoiser wrappers,
samplers (one registry with their defaults), and zero-shot conditional generation.
Pure functions over tensors (tuples of tensors for joint models)."""

from avbench.diffusion.conditional import replacement_model_fn
from avbench.diffusion.denoisers import Denoiser, Prediction, joint_denoiser, superres_denoiser
from avbench.diffusion.gaussian import q_sample, training_loss
from avbench.diffusion.respace import respaced, space_timesteps
from avbench.diffusion.samplers import (
    SAMPLERS,
    SamplerPlan,
    SamplerSpec,
    resolve_sampler,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3s,
)
from avbench.diffusion.schedules import DiffusionConfig, Schedule

__all__ = [
    "SAMPLERS", "Denoiser", "DiffusionConfig", "Prediction", "SamplerPlan", "SamplerSpec", "Schedule", "joint_denoiser",
    "q_sample", "replacement_model_fn", "resolve_sampler", "respaced", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m",
    "sample_dpmpp_3s", "space_timesteps", "superres_denoiser", "training_loss",
]
