"""Aligned windows read back from latent shards (`avbench encode`), like `windows.py` does for pixels.

An item is `{"video": float32 [F, Cv, h, w], "audio": float32 [Ca, A], "key": str, "start": int,
"audio_start": int}`: clip frames [start, start + F) and the audio latents [audio_start, audio_start + A)
that cover exactly those frames.

Window rule. An audio latent spans `samples_per_latent` samples, so at 10 fps there are p/q latents
per frame (MMAudio 16 kHz: 3.125 = 25/8; AudioLDM 2: 2.5 = 5/2), and a span of frames falls on latent
boundaries only when its first frame and its length are multiples of q (`frame_step`: 8 and 2). So:
`frames` must be a multiple of `frame_step` (16 → A = 50 for MMAudio 16 kHz, 40 for AudioLDM 2), and
window starts are multiples of `frame_step` (train: drawn uniformly among those that fit; eval: the
largest multiple of the step ≤ `eval_start` that fits). No crop or pad happens here: whatever the
model needs to make A divide through its downsampling is the model's (and recorded there).

Everything else — resampled shard streams per (seed, epoch, rank, worker) in train mode, rank-disjoint
equal counts in eval mode, the loader that advances epochs — is `WindowDataset`'s and `WindowLoader`'s
(windows.py), reused as they are: only reading one sample into windows differs. No horizontal flip:
a flipped latent is not the latent of the flipped frame.
"""

from __future__ import annotations

import io
import json
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from avbench.data.decode import DecodeError
from avbench.data.windows import WindowDataset, WindowLoader, dist_info, loader_over
from avbench.dataset_index import check_file, latent_dir, latent_shard_file, load_latent_index
from avbench.errors import ConfigError, DataError, MissingInputError


@dataclass(frozen=True)
class LatentWindowConfig:
    vae: str = "sd-mmaudio16k"
    size: int = 256  # frame size the latents were encoded from
    split: str = "train"
    frames: int = 16  # F, a multiple of the codec's frame_step
    mode: Literal["train", "eval"] = "train"
    seed: int = 0
    windows_per_clip: int = 1
    shuffle_buffer: int = 64
    eval_start: int = 0
    equalize: Literal["truncate", "pad"] = "truncate"
    verify: bool = False  # check each tar's size and sha256 against the index before reading


def latent_urls(root: str | Path, vae: str, size: int, split: str, verify: bool = False) -> tuple[list[str], int, dict]:
    """(tar paths, total samples, index) of one split of `ROOT/latents/<vae>/<size>/`."""
    index = load_latent_index(root, vae, size)
    rows = [r for r in index["shards"] if r["split"] == split]
    if not rows:
        have = sorted({r["split"] for r in index["shards"]})
        raise MissingInputError(f"{latent_dir(root, vae, size) / 'index.json'}: no {split!r} latent shards "
                                f"(have {have}); pick another split or encode it")
    if verify:
        fix = f"rerun `avbench encode {root} --vae {vae} --size {size}`"
        problems = [p for r in rows if (p := check_file(latent_shard_file(root, vae, size, r), r["bytes"],
                                                        r["sha256"], fix))]
        if problems:
            raise DataError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return [str(latent_shard_file(root, vae, size, r)) for r in rows], sum(r["samples"] for r in rows), index


class LatentWindowDataset(WindowDataset):
    """IterableDataset of aligned latent windows (see the module docstring)."""

    def __init__(self, root: str | Path, cfg: LatentWindowConfig = LatentWindowConfig(), *, rank: int | None = None,
                 world_size: int | None = None):
        torch.utils.data.IterableDataset.__init__(self)
        self.root, self.cfg = Path(root), cfg
        self.urls, self.num_samples, self.index = latent_urls(root, cfg.vae, cfg.size, cfg.split, cfg.verify)
        audio = self.index["audio_latent"]
        self.fps = int(self.index["fps"])
        self.frame_step = int(audio["frame_step"])
        num, den = (int(x) for x in str(audio["latents_per_frame"]).split("/"))
        self.latents_per_frame = (num, den)
        if cfg.frames % self.frame_step:
            raise ConfigError(f"latent windows of {cfg.vae}: frames={cfg.frames} is not a multiple of "
                              f"{self.frame_step} (audio latents per frame {num}/{den}); use e.g. "
                              f"{max(1, round(cfg.frames / self.frame_step)) * self.frame_step}")
        self.audio_window = cfg.frames * num // den
        self.video_shape = (cfg.frames, *self.index["video_latent"]["shape_per_frame"])
        self.audio_shape = (int(audio["channels"]), self.audio_window)
        self.rank, self.world_size = dist_info(rank, world_size)
        self.epoch = 0
        self.samples_per_worker: int | None = None

    def audio_span(self, start: int) -> tuple[int, int]:
        num, den = self.latents_per_frame
        return start * num // den, (start + self.cfg.frames) * num // den

    def _windows(self, sample: dict, rng: random.Random | None) -> Iterator[dict]:
        cfg, key = self.cfg, sample["__key__"]
        missing = [ext for ext in ("json", "video.npy", "audio.npy") if ext not in sample]
        if missing:
            msg = f"{sample.get('__url__')}: {key} has no {', '.join(missing)} member"
            if rng is None:
                raise DecodeError(msg)
            warnings.warn(f"skipped: {msg}", stacklevel=2)
            return
        total = int(json.loads(sample["json"])["latent"]["video"]["frames"])
        last = (total - cfg.frames) // self.frame_step  # last start, in steps
        if last < 0:
            if rng is None:
                raise DecodeError(f"{sample['__url__']}: {key} has {total} frames, fewer than a window of {cfg.frames}")
            return
        starts = [rng.randint(0, last) * self.frame_step for _ in range(cfg.windows_per_clip)] if rng else \
            [min(cfg.eval_start // self.frame_step, last) * self.frame_step]
        video = np.load(io.BytesIO(sample["video.npy"]), allow_pickle=False)
        audio = np.load(io.BytesIO(sample["audio.npy"]), allow_pickle=False)
        for start in starts:
            a0, a1 = self.audio_span(start)
            if a1 > audio.shape[-1] or start + cfg.frames > video.shape[0]:
                msg = f"{sample['__url__']}: {key}: latents {video.shape}/{audio.shape} too short for frames {start}+{cfg.frames}"
                if rng is None:
                    raise DecodeError(msg)
                warnings.warn(f"skipped: {msg}", stacklevel=2)
                continue
            yield {"video": torch.from_numpy(video[start : start + cfg.frames].astype(np.float32)),
                   "audio": torch.from_numpy(audio[:, a0:a1].astype(np.float32)),
                   "key": key, "start": start, "audio_start": a0}


def make_latent_loader(root: str | Path, vae: str, size: int, split: str = "train", frames: int = 16,
                       batch_size: int = 4, *, mode: Literal["train", "eval"] = "train", seed: int = 0,
                       num_workers: int = 0, batches_per_epoch: int | None = None, rank: int | None = None,
                       world_size: int | None = None, pin_memory: bool = False, **cfg_kw) -> WindowLoader:
    """A DDP-safe loader over latent windows, with the batch rules of `windows.make_loader`."""
    cfg = LatentWindowConfig(vae=vae, size=size, split=split, frames=frames, mode=mode, seed=seed, **cfg_kw)
    ds = LatentWindowDataset(root, cfg, rank=rank, world_size=world_size)
    return loader_over(ds, batch_size=batch_size, num_workers=num_workers, batches_per_epoch=batches_per_epoch,
                       pin_memory=pin_memory)
