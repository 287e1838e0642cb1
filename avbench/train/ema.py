"""Exponential moving average of the weights, kept in fp32 beside the model.

The EMA is a plain dict of tensors (not a module copy), so it checkpoints as a state dict with the
model's own key names and loads straight into a sampling model.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float, start_step: int = 0):
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Average in the weights after optimizer step `step`; before `start_step` just copy them.

        One fused `lerp` over all floating tensors (the seed model has ~1000), not a kernel pair per tensor.
        """
        decay = self.decay if step >= self.start_step else 0.0
        shadow, current = [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                shadow.append(self.shadow[k])
                current.append(v.detach().float())  # a no-op for fp32 master weights
            else:
                self.shadow[k].copy_(v)
        if shadow:
            torch._foreach_lerp_(shadow, current, 1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(sd)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} keys, e.g. {sorted(missing)[0]!r}")
        for k in self.shadow:
            self.shadow[k].copy_(sd[k])

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})
