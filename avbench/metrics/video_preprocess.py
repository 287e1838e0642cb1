"""Frame preprocessing for I3D, one function per published convention.

Inputs are uint8 clips [N, T, H, W, 3]; outputs are float32 [N, 3, T, S, S] in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _to_nchw(frames: torch.Tensor) -> torch.Tensor:
    n, t, h, w, c = frames.shape
    return frames.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float()


def _to_ncthw(x: torch.Tensor, n: int, t: int) -> torch.Tensor:
    return x.reshape(n, t, *x.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 `tf.image.resize_bilinear` (align_corners=False, no half-pixel centres) on [B, C, H, W].

    Source coordinate = dst · (in/out), neighbours ⌊src⌋ and min(⌊src⌋+1, in−1); no antialiasing. This
    differs from torch `interpolate(align_corners=False)`, which samples at (dst+½)·scale−½.
    The arithmetic follows TF's kernel, because on sharp content its rounding shows: the scale and the
    source coordinates are float32 (float64 coordinates moved outputs by up to 3e-3 of 255 on noise
    frames), and each output is lerped along x first, then along y.
    """

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in, dtype=torch.float32) / torch.tensor(n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32, device=x.device) * scale.to(x.device)
        floor = src.floor()
        lo = floor.long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - floor).to(x.dtype)

    y0, y1, fy = axis(x.shape[-2], size[0])
    x0, x1, fx = axis(x.shape[-1], size[1])
    rows0, rows1 = x[..., y0, :], x[..., y1, :]
    top = rows0[..., x0] + (rows0[..., x1] - rows0[..., x0]) * fx
    bottom = rows1[..., x0] + (rows1[..., x1] - rows1[..., x0]) * fx
    return top + (bottom - top) * fy[:, None]


def squash_tf1(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """`tf` profile: whole frame (aspect not kept) → size×size with TF1 bilinear, then 2x/255 − 1."""
    n, t = frames.shape[:2]
    x = resize_bilinear_tf1(_to_nchw(frames), (size, size))
    return _to_ncthw(2.0 * x / 255.0 - 1.0, n, t)  # the FVD example's expression, in its order


def short_side_center_crop(frames: torch.Tensor, size: int = 224, mode: str = "bilinear") -> torch.Tensor:
    """VideoGPT/MM-Diffusion: short side → size (⌈·⌉ on the long side), torch interpolate, centre crop, [−1, 1]."""
    n, t, h, w, _ = frames.shape
    x = _to_nchw(frames) / 255.0
    scale = size / min(h, w)
    # The short side is set to `size` exactly: ⌈h·(size/h)⌉ is size+1 for some h (100, 200, …) in floats.
    th, tw = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
    x = F.interpolate(x, size=(th, tw), mode=mode, align_corners=False)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[..., top : top + size, left : left + size]
    return _to_ncthw((x - 0.5) * 2.0, n, t)


def to_square_uint8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """MM-Diffusion's 64×64 loader (`MultimodalDataset.process_video`): fit inside size×size keeping the
    aspect ratio (⌊side·ratio⌋, bicubic), then pad with black, the odd pixel at the bottom/right; uint8."""
    n, t, h, w, _ = frames.shape
    if (h, w) == (size, size):
        return frames
    ratio = min(size / h, size / w)
    nh, nw = int(h * ratio), int(w * ratio)
    x = F.interpolate(_to_nchw(frames), size=(nh, nw), mode="bicubic", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    x = F.pad(x, (left, size - nw - left, top, size - nh - top))
    return x.permute(0, 2, 3, 1).reshape(n, t, size, size, 3).contiguous()
