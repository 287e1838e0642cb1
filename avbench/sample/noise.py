"""Per-sample random streams: sample i draws all its noise from its own generator seeded with seed + i,
so it is the same whichever batch it lands in (and on whichever device: noise is drawn on the CPU)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(seed) + int(i)) for i in indices]


def draw(gens: Sequence[torch.Generator], shape: Sequence[int], device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[len(gens), *shape]: row b from generator b."""
    return torch.stack([torch.randn(tuple(shape), generator=g, dtype=dtype) for g in gens]).to(device)


def noise_fn(gens: Sequence[torch.Generator]):
    """A sampler `noise(like)` drawing each batch row from its sample's generator."""

    def noise(like):
        return tuple(draw(gens, v.shape[1:], v.device, v.dtype) for v in like)

    return noise
