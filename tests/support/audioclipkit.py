"""Seeded AudioCLIP audio-head weights and inputs that replay from a key/shape listing alone.

The parity fixture in tests/fixtures/audioclip/ was made by running the ORIGINAL AudioCLIP code on exactly
these weights and inputs (the generator outside the repository loads this file by path, so there is one
recipe). Only torch's CPU generator is used: its stream is stable across versions, numpy's is not promised.
"""

from __future__ import annotations

import hashlib
import math

import torch

WEIGHT_SEED = 20240605
INPUT_SEED = 7
CLIP_SAMPLES = 70_560  # 1.6 s at 44.1 kHz: MM-Diffusion's AUDIO_SIZE
N_CLIPS = 4


def seeded_state_dict(shapes: dict[str, list[int]], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """One generator walks the sorted keys; each tensor kind gets values that keep a 50-layer net finite.

    `window` (a fixed Blackman-Harris buffer) and `num_batches_tracked` are not drawn: the window comes from
    the model that loads the dict, so the fixture also checks the port's window against scipy's.
    The running statistics drawn here are placeholders: the fixture replaces them with calibrated ones
    (`with_running_stats`), since statistics unrelated to the activations saturate every gate.
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("window", "num_batches_tracked") or math.prod(shape) == 0:
            continue
        if key.endswith("fbsp.m"):
            t = 0.05 + 0.45 * torch.rand(shape, generator=g)
        elif key.endswith("fbsp.fb"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("fbsp.fc"):
            t = torch.arange(shape[0], dtype=torch.float32) + 0.25 * torch.randn(shape, generator=g)
        elif leaf == "running_mean":
            t = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "running_var":
            t = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "weight" and len(shape) == 1 and (key.endswith("bn3.weight") or key.startswith("att")):
            # residual branches' last scale and the gates' scale kept small: a random ResNeXt-50 with unit
            # scales is chaotic (gates saturate, fp32 rounding grows ×1e4 through depth), no parity test survives
            t = 0.1 + 0.2 * torch.rand(shape, generator=g)
        elif leaf == "weight" and len(shape) == 1:  # other BatchNorm scales
            t = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "bias":
            t = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "weight":  # conv (4-d) or linear (2-d): He-normal over the fan-in
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        else:
            raise KeyError(f"no init rule for {key} {shape}")
        out[key] = t.float()
    return out


def bn_keys(shapes: dict[str, list[int]]) -> list[str]:
    """BatchNorm layer prefixes in sorted order: the layout of the fixture's flat running-statistics arrays."""
    return sorted(k[: -len(".running_mean")] for k in shapes if k.endswith(".running_mean"))


def with_running_stats(state: dict[str, torch.Tensor], shapes: dict[str, list[int]], mean, std) -> dict[str, torch.Tensor]:
    """Put the fixture's flat (float16) running means and standard deviations into a state dict as float32."""
    mean = torch.as_tensor(mean).to(torch.float32)
    std = torch.as_tensor(std).to(torch.float32)
    out, at = dict(state), 0
    for prefix in bn_keys(shapes):
        n = shapes[f"{prefix}.running_mean"][0]
        out[f"{prefix}.running_mean"] = mean[at: at + n].clone()
        out[f"{prefix}.running_var"] = std[at: at + n] ** 2
        at += n
    if at != len(mean):
        raise ValueError(f"running statistics cover {len(mean)} channels, the listing has {at}")
    return out


def seeded_clips(n: int = N_CLIPS, seed: int = INPUT_SEED) -> torch.Tensor:
    """[n, 1, 70560] float32 in [-1, 1]: tones plus noise, clip 1 zero-padded after 1.0 s (as short audio is)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(CLIP_SAMPLES, dtype=torch.float64) / 44100.0
    clips = []
    for i in range(n):
        freqs = 80.0 + 8000.0 * torch.rand(3, generator=g, dtype=torch.float64)
        phases = 2 * math.pi * torch.rand(3, generator=g, dtype=torch.float64)
        amps = 0.05 + 0.25 * torch.rand(3, generator=g, dtype=torch.float64)
        x = (amps[:, None] * torch.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        x = x + 0.02 * (i + 1) * torch.randn(CLIP_SAMPLES, generator=g, dtype=torch.float64)
        if i == 1:
            x[44100:] = 0.0
        clips.append(x.clamp(-1.0, 1.0))
    return torch.stack(clips)[:, None, :].float()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted keys and raw float32 bytes: tells a recipe replay mismatch from a port mismatch."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()
