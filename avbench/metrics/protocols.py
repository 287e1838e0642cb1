"""Eval protocols: which 16-frame windows of which clips a score is computed on, and how frames become uint8.

A feature profile (profiles.py) says how one clip becomes a feature vector; a protocol says which clips
are fed and how the two sets are compared, so that a number can stand next to a published evaluator's.
Each protocol is one frozen dataclass, recorded with every score and part of the reference-cache key:

- `avbench` (default): one window at frame 0 of each clip, clips in source order, first N.
- `mmdiffusion`: MM-Diffusion's `evaluator.py` — torchvision `VideoClips(clip_length_in_frames=16,
  frames_between_clips=1)` windows at every offset of every video (in file order), the global clip
  indices shuffled (Python `random.shuffle`, unseeded there, seeded here), the first N; reference = the
  train split; frames letterboxed to 64×64, then its float round trip `((u/127.5 − 1) + 1)·127.5` cast
  to uint8 (truncating: 63 of the 256 levels come back one lower); Fréchet distance in float32 with
  TF-GAN's SVD square root (singular values below 1e-10 left unrooted); KVD as the `mmdiffusion` I3D
  profile fixes it (float32).
- `styleganv`: StyleGAN-V's FVD — one random 16-frame window per video (seeded, per clip key), videos
  shorter than 16 frames dropped, the first N videos in order; covariance normaliser N (its I3D profile).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from avbench.errors import MetricsError


class ProtocolError(MetricsError):
    """An unknown protocol, or a reference/profile that contradicts the chosen protocol."""


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    reproduces: str
    window: Literal["first", "all_offsets_shuffled", "random_per_video"]
    frames: int = 16
    frames_between_clips: int = 1  # all_offsets_shuffled: step between window starts (VideoClips)
    seeded: bool = False  # whether `seed` changes which windows are drawn
    drop_short: bool = False  # clips with fewer than `frames` frames are left out (otherwise: a read error)
    reference_split: str | None = None  # None: whatever --reference names
    clip_count: int = 2048
    uint8: Literal["as_read", "mmdiffusion_truncate"] = "as_read"
    square_size: int | None = None  # letterbox to this square before the uint8 round trip (MM-Diffusion: 64)
    fvd_profile: str | None = None  # the I3D profile the protocol fixes (None: --fvd-profile, default tf)
    # "profile_float64": frechet.py in float64 with the FVD profile's normaliser and square root
    frechet: Literal["profile_float64", "mmdiffusion_float32_svd"] = "profile_float64"

    def to_dict(self) -> dict:
        return asdict(self)

    def record(self, seed: int, num_clips: int) -> dict:
        """What goes into a result record and a cache key: the protocol, the seed it drew with (None
        when the seed does not matter) and the clip cap actually used."""
        return {**self.to_dict(), "seed": seed if self.seeded else None, "num_clips": num_clips}


PROTOCOLS: dict[str, EvalProtocol] = {
    "avbench": EvalProtocol(
        name="avbench", reproduces="avbench's own rule (no published evaluator)", window="first"),
    "mmdiffusion": EvalProtocol(
        name="mmdiffusion", reproduces="MM-Diffusion evaluator.py (researchmm/MM-Diffusion, commit 7250222)",
        window="all_offsets_shuffled", seeded=True, drop_short=True, reference_split="train",
        uint8="mmdiffusion_truncate", square_size=64, fvd_profile="mmdiffusion",
        frechet="mmdiffusion_float32_svd"),
    "styleganv": EvalProtocol(
        name="styleganv", reproduces="StyleGAN-V FVD (random 16-frame window per video, N normaliser)",
        window="random_per_video", seeded=True, drop_short=True, fvd_profile="styleganv"),
}


def get_protocol(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown eval protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _key_offset(seed: int, key: str, span: int) -> int:
    # Per clip key rather than one RNG stream, so adding or losing a clip moves no other clip's window.
    digest = hashlib.sha256(f"styleganv\0{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % span


def draw_windows(protocol: EvalProtocol, clips: Sequence[tuple[str, int]], seed: int,
                 limit: int) -> list[tuple[str, int]]:
    """(clip key, first frame) of every window the protocol scores, in the order it scores them.

    `clips` is (key, frame count) per clip in source order (file order for MM-Diffusion's sorted listing).
    """
    f = protocol.frames
    if protocol.window == "first":
        keep = [(k, 0) for k, n in clips if n >= f or not protocol.drop_short]
        return keep[:limit]
    if protocol.window == "random_per_video":
        keep = [(k, n) for k, n in clips if n >= f]
        return [(k, _key_offset(seed, k, n - f + 1)) for k, n in keep[:limit]]
    if protocol.window == "all_offsets_shuffled":
        step = protocol.frames_between_clips
        # VideoClips: `unfold(pts, f, step)` gives (n − f) // step + 1 windows per video (none if n < f);
        # a global clip index runs over the videos in order (cumulative sizes).
        counts = [max(0, (n - f) // step + 1) for _, n in clips]
        ends = np.cumsum(counts).tolist() if counts else []
        order = list(range(ends[-1] if ends else 0))
        random.Random(seed).shuffle(order)
        out = []
        for g in order[:limit]:
            v = bisect.bisect_right(ends, g)
            first = ends[v - 1] if v else 0
            out.append((clips[v][0], (g - first) * step))
        return out
    raise ProtocolError(f"protocol {protocol.name!r}: unknown window rule {protocol.window!r}")


def to_protocol_uint8(frames: np.ndarray, protocol: EvalProtocol) -> np.ndarray:
    """uint8 [T, H, W, 3] as read → the uint8 frames the protocol's evaluator hands to I3D."""
    if protocol.uint8 == "as_read":
        return frames
    if protocol.uint8 == "mmdiffusion_truncate":
        import torch

        from avbench.metrics.video_preprocess import to_square_uint8

        u = torch.from_numpy(np.ascontiguousarray(frames))
        if protocol.square_size is not None:
            u = to_square_uint8(u[None], protocol.square_size)[0]
        # The loader gives u.float() / 127.5 − 1 (float32); the evaluator turns that back with
        # ((x + 1) * 127.5).clamp(0, 255).to(uint8), which truncates: e.g. 1 → 0.99999994 → 0.
        x = u.float() / 127.5 - 1
        return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    raise ProtocolError(f"protocol {protocol.name!r}: unknown uint8 rule {protocol.uint8!r}")


def frechet_mmdiffusion(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance computed as MM-Diffusion's `evaluations/fvd/fvd.py` does: float32 torch, N−1
    covariance, Tr √ via TF-GAN's `_symmetric_matrix_square_root` (torch.svd; singular values < 1e-10
    kept as they are instead of rooted), trace term Tr(Σ1 + Σ2) − 2 Tr √(√Σ1 Σ2 √Σ1)."""
    import torch

    def sqrt_sym(m: torch.Tensor) -> torch.Tensor:
        u, s, v = torch.svd(m)
        s = torch.where(s < 1e-10, s, torch.sqrt(s))
        return u @ torch.diag(s) @ v.t()

    def cov(a: torch.Tensor) -> torch.Tensor:
        a = a - a.mean(dim=0, keepdim=True)
        return (1.0 / (a.shape[0] - 1)) * (a.t() @ a)  # its order of operations

    a = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    s1, s2 = cov(a), cov(b)
    r = sqrt_sym(s1)
    tr = torch.trace(sqrt_sym(r @ (s2 @ r)))
    mean = torch.sum((a.mean(dim=0) - b.mean(dim=0)) ** 2)
    return float(torch.trace(s1 + s2) - 2.0 * tr + mean)
