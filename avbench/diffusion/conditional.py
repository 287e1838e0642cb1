"""Zero-shot conditional generation with a joint model: audio→video and video→audio by replacement.

The joint model was trained on (video, audio) pairs at a shared timestep. To generate one modality given
the other, every model call sees the known modality re-noised to the current timestep with a fixed noise
draw, x_t^known = √ᾱ_t · known + √(1-ᾱ_t) · ε_known. The ε returned for the known modality is the one
that makes the sampler's own x̂0 for it equal to the condition, so every sampler ends on the condition.

Optional gradient guidance (MM-Diffusion's `classifier_scale`): replacement alone only informs the
unknown modality through the model's cross-attention. With `guidance_scale` w > 0 the unknown modality's
denoised estimate is pushed along -w·√ᾱ_t·∇_{x_t^unknown} ‖x̂0^known - known‖² (mean over elements), i.e.
towards noisy inputs from which the model would reconstruct the given condition. MM-Diffusion applies
the same gradient to the sample after a DDPM/DDIM step; applying it to the denoised estimate lets every
sampler here use it, so w is not numerically interchangeable with their scale.
"""

from __future__ import annotations

import math

import torch

from avbench.diffusion.denoisers import Denoiser, ModelFn, Prediction, as_prediction
from avbench.diffusion.gaussian import predict_eps, predict_x0
from avbench.diffusion.schedules import Schedule


def replacement_model_fn(
    model_fn: ModelFn,
    train_schedule: Schedule,
    *,
    known: int,
    value: torch.Tensor,
    noise: torch.Tensor,
    guidance_scale: float = 0.0,
) -> Denoiser:
    """Wrap a joint denoiser so element `known` of x is the condition `value` at every step.

    `train_schedule` is the model's training schedule (the wrapper sees training timesteps);
    `noise` is the fixed ε used to re-noise `value` (draw it from the sample's generator). The result
    keeps the variance type of `model_fn` when it is a `Denoiser` (the variance values pass through).
    """
    if value.shape != noise.shape:
        raise ValueError(f"condition {tuple(value.shape)} and its noise {tuple(noise.shape)} differ in shape")

    def wrapped(x, t):
        if x[known].shape != value.shape:
            raise ValueError(f"condition has shape {tuple(value.shape)}, the model expects {tuple(x[known].shape)}")
        if not bool((t == t[0]).all()):
            raise ValueError("conditional sampling needs one shared timestep per batch")
        ac = float(train_schedule.alphas_cumprod[int(t[0])])
        x_known = math.sqrt(ac) * value + math.sqrt(1 - ac) * noise
        eps_known = predict_eps(x[known], value, ac)  # from the sampler's state, so its x̂0 is `value`
        x_in = tuple(x_known if k == known else v for k, v in enumerate(x))
        if guidance_scale == 0:
            pred = as_prediction(model_fn(x_in, t))
            eps = tuple(eps_known if k == known else e for k, e in enumerate(pred.eps))
            return Prediction(eps, pred.var_values)
        with torch.enable_grad():
            unknown = [k for k in range(len(x)) if k != known]
            leaves = [x[k].detach().requires_grad_() for k in unknown]
            xg = list(x_in)
            for k, leaf in zip(unknown, leaves):
                xg[k] = leaf
            pred = as_prediction(model_fn(tuple(xg), t))
            x0_known = predict_x0(x_known, pred.eps[known], ac)
            err = ((x0_known - value) ** 2).flatten(1).mean(1).sum()
            grads = torch.autograd.grad(err, leaves)
        eps = list(e.detach() for e in pred.eps)
        eps[known] = eps_known
        # Moving x̂0 by -w√ᾱ·g is moving ε̂ by +w·ᾱ/√(1-ᾱ)·g at fixed x_t.
        coef = guidance_scale * ac / math.sqrt(1 - ac)
        for k, g in zip(unknown, grads):
            eps[k] = eps[k] + coef * g
        var = None if pred.var_values is None else tuple(v.detach() for v in pred.var_values)
        return Prediction(tuple(eps), var)

    return Denoiser(wrapped, model_fn.variance if isinstance(model_fn, Denoiser) else "fixed_large")
