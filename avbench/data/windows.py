"""Aligned training/eval windows read back from the shards.

An item is `{"video": float32 [F,3,H,W] in [-1,1], "audio": float32 [1, F·rate/fps], "key": str,
"start": int}`; `start` is the window's first clip frame, and audio sample 0 of the item is clip sample
`start · rate/fps`, so frame k of the window covers audio samples [k·1600, (k+1)·1600) at 10 fps/16 kHz.

Two modes, because "every rank gets the same number of batches" and "ranks see disjoint data" cannot both
be guaranteed by one mechanism:

- `train`: `wds.ResampledShards` draws shards with replacement, seeded per (seed, epoch, rank, worker), so
  ranks and workers read different streams (disjoint in expectation, not by construction); every worker
  yields exactly `samples_per_worker` items, so every rank gets the same number of batches (the WebDataset
  FAQ's `resampled=True` + `with_epoch` recipe). A random window start per clip, optional flip with
  probability `flip_p`, a seeded shuffle buffer.
- `eval`: no resampling; the split's samples in index order, item i goes to rank `i % world`, then to
  worker `(i // world) % workers`. Ranks are disjoint by construction and get exactly the same count
  (`equalize="truncate"` drops the last `N % world` samples, `"pad"` wraps around like PyTorch's
  DistributedSampler). Each rank reads every tar of the split but decodes only its own samples; eval
  splits are small, and this keeps counts exact for any shard count. Fixed window start, no flip.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from avbench.data.decode import DecodeError, decode_audio_window, decode_video_window
from avbench.dataset_index import load_index, shard_file, verify_root
from avbench.errors import DataError, MissingInputError


@dataclass(frozen=True)
class WindowConfig:
    size: int = 64  # frame size of the shards to read
    split: str = "train"
    frames: int = 16  # F
    mode: Literal["train", "eval"] = "train"
    flip_p: float = 0.0  # horizontal flip probability (train only); the seed flipped always
    seed: int = 0
    windows_per_clip: int = 1  # train: random windows drawn per clip visit
    shuffle_buffer: int = 64  # train: samples held for shuffling
    eval_start: int = 0  # eval: first frame of the fixed window (clamped to the clip)
    equalize: Literal["truncate", "pad"] = "truncate"  # eval: how ranks get equal counts
    verify: bool = False  # check each shard's size and sha256 against the index before reading


MAX_BARREN_SAMPLES = 1000


def _warn_and_continue(exn: Exception) -> bool:
    """Like `wds.warn_and_continue` minus its 0.5 s sleep, which a resampled stream would pay on every
    revisit of a damaged shard."""
    warnings.warn(f"skipped: {exn!r}", stacklevel=2)
    return True


def _mix(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world) from the arguments, else torch.distributed, else RANK/WORLD_SIZE, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    import os

    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_urls(root: str | Path, size: int, split: str, verify: bool = False) -> tuple[list[str], int, dict]:
    """(tar paths, total samples, index) of one size and split, from `DIR/shards/index.json`; with
    `verify`, a DataError unless every one of those tars matches its size and sha256 in the index."""
    root = Path(root)
    index = load_index(root)
    rows = [r for r in index["shards"] if r["size"] == size and r["split"] == split]
    if not rows:
        have = sorted({(r["size"], r["split"]) for r in index["shards"]})
        raise MissingInputError(
            f"{root / 'shards' / 'index.json'}: no {split!r} shards at {size} px (have {have}); "
            "pick another --size/--split or rebuild with that size"
        )
    if verify:
        problems = verify_root(root, rows)
        if problems:
            more = f" (and {len(problems) - 1} more; run `avbench verify {root}`)" if len(problems) > 1 else ""
            raise DataError(problems[0] + more)
    return [str(shard_file(root, r)) for r in rows], sum(r["samples"] for r in rows), index


class WindowDataset(IterableDataset):
    """IterableDataset of aligned windows over `DIR/shards/<size>/<split>/*.tar` (see module docstring)."""

    def __init__(self, root: str | Path, cfg: WindowConfig = WindowConfig(), *, rank: int | None = None,
                 world_size: int | None = None):
        super().__init__()
        self.root, self.cfg = Path(root), cfg
        self.urls, self.num_samples, index = shard_urls(root, cfg.size, cfg.split, verify=cfg.verify)
        self.fps = int(index["fps"])
        self.samples_per_frame = int(index["sample_rate"]) // self.fps
        self.rank, self.world_size = dist_info(rank, world_size)
        self.epoch = 0
        self.samples_per_worker: int | None = None  # train: None = endless

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def with_epoch(self, samples_per_worker: int) -> "WindowDataset":
        self.samples_per_worker = samples_per_worker
        return self

    def eval_count(self, worker: int = 0, num_workers: int = 1) -> int:
        """How many items one (rank, worker) yields in eval mode."""
        return len(self._eval_positions(worker, num_workers))

    # ---- iteration -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        if self.cfg.mode == "train":
            return self._train_iter(worker, num_workers)
        if self.cfg.mode == "eval":
            return self._eval_iter(worker, num_workers)
        raise ValueError(f"WindowConfig.mode must be 'train' or 'eval', got {self.cfg.mode!r}")

    def _train_iter(self, worker: int, num_workers: int) -> Iterator[dict]:
        import webdataset as wds

        rank, cfg = self.rank, self.cfg
        stream_seed = _mix(cfg.seed, self.epoch)
        shards = wds.ResampledShards(self.urls, seed=stream_seed, worker_seed=lambda: rank * 1000 + worker,
                                     deterministic=True)
        rng = random.Random(_mix(cfg.seed, self.epoch, rank, worker, "windows"))
        pipe = wds.DataPipeline(
            shards,
            wds.tarfile_to_samples(handler=_warn_and_continue),
            wds.shuffle(cfg.shuffle_buffer, initial=min(cfg.shuffle_buffer, 8), rng=random.Random(rng.random())),
        )
        n, barren = 0, 0
        for sample in pipe:
            barren += 1
            for item in self._windows(sample, rng):
                yield item
                n, barren = n + 1, 0
                if self.samples_per_worker is not None and n >= self.samples_per_worker:
                    return
            if barren > MAX_BARREN_SAMPLES:  # an endless resampled stream must not spin on broken data
                raise DecodeError(f"{self.root}: {barren} samples in a row gave no {cfg.frames}-frame window "
                                  "(damaged shards or clips too short); rebuild the shards or lower `frames`")

    def _eval_positions(self, worker: int, num_workers: int) -> list[int]:
        n, world = self.num_samples, self.world_size
        per_rank = n // world if self.cfg.equalize == "truncate" else math.ceil(n / world)
        mine = [(self.rank + world * k) % n for k in range(per_rank)] if n else []
        return mine[worker::num_workers]

    def _eval_iter(self, worker: int, num_workers: int) -> Iterator[dict]:
        import webdataset as wds

        wanted: dict[int, int] = {}
        for pos in self._eval_positions(worker, num_workers):
            wanted[pos] = wanted.get(pos, 0) + 1  # "pad" can repeat a sample
        last = max(wanted, default=-1)
        pipe = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.tarfile_to_samples())
        for pos, sample in enumerate(pipe):
            if pos > last:
                return
            for _ in range(wanted.get(pos, 0)):
                yield from self._windows(sample, None)

    # ---- one sample → windows ------------------------------------------------------------------------

    def _windows(self, sample: dict, rng: random.Random | None) -> Iterator[dict]:
        cfg, key = self.cfg, sample["__key__"]
        missing = [ext for ext in ("json", "mp4", "flac") if ext not in sample]
        if missing:  # e.g. a tar cut short mid-sample
            msg = f"{sample.get('__url__')}: {key} has no {', '.join(missing)} member"
            if rng is None:
                raise DecodeError(msg)
            warnings.warn(f"skipped: {msg}", stacklevel=2)
            return
        meta = json.loads(sample["json"])
        total = int(meta["video"]["frames"])
        if total < cfg.frames:
            if rng is None:
                raise DecodeError(f"{sample['__url__']}: {key} has {total} frames, fewer than a window of {cfg.frames}")
            return
        starts = [rng.randint(0, total - cfg.frames) for _ in range(cfg.windows_per_clip)] if rng else \
            [min(cfg.eval_start, total - cfg.frames)]
        for start in starts:
            try:
                frames = decode_video_window(sample["mp4"], start, cfg.frames, self.fps)
                audio = decode_audio_window(sample["flac"], start * self.samples_per_frame,
                                            cfg.frames * self.samples_per_frame)
            except (DecodeError, OSError, RuntimeError, ValueError) as e:
                if rng is None:  # eval counts must stay exact: fail loudly
                    raise DecodeError(f"{sample['__url__']}: {key}: {e}") from e
                warnings.warn(f"{sample['__url__']}: skipped {key}: {e}", stacklevel=2)
                continue
            if rng is not None and cfg.flip_p > 0 and rng.random() < cfg.flip_p:
                frames = frames[:, :, ::-1]
            # numpy, not torch: tiny torch ops pay for intra-op threads in the main process
            video = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)
            video *= 1 / 127.5
            video -= 1.0
            yield {"video": torch.from_numpy(video), "audio": torch.from_numpy(audio).unsqueeze(0),
                   "key": key, "start": start}


class WindowLoader(DataLoader):
    """A DataLoader that advances the dataset's epoch each time it is iterated, so a resampled training
    stream differs per epoch even though non-persistent workers get a fresh copy of the dataset."""

    def __init__(self, dataset: WindowDataset, batches_per_epoch: int, **kw):
        super().__init__(dataset, **kw)
        self.batches_per_epoch = batches_per_epoch
        self._next_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._next_epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        self.dataset.set_epoch(self._next_epoch)
        self._next_epoch += 1
        return super().__iter__()


def make_loader(root: str | Path, cfg: WindowConfig = WindowConfig(), *, batch_size: int = 4, num_workers: int = 0,
                batches_per_epoch: int | None = None, rank: int | None = None, world_size: int | None = None,
                pin_memory: bool = False) -> WindowLoader:
    """A DDP-safe loader: every rank gets the same number of batches (see the module docstring).

    train: `batches_per_epoch` (default: the split's clips // (world · batch)) is rounded up to a multiple
    of `num_workers`, since each worker yields whole batches of its own stream.
    eval: every sample of the split once (truncated or padded to an equal count per rank).
    """
    ds = WindowDataset(root, cfg, rank=rank, world_size=world_size)
    return loader_over(ds, batch_size=batch_size, num_workers=num_workers, batches_per_epoch=batches_per_epoch,
                       pin_memory=pin_memory)


def loader_over(ds: WindowDataset, *, batch_size: int, num_workers: int, batches_per_epoch: int | None,
                pin_memory: bool) -> WindowLoader:
    """`make_loader`'s batch rules over a built dataset (pixel or latent windows: `ds.cfg` has `mode`
    and `windows_per_clip`)."""
    workers = max(1, num_workers)
    if ds.cfg.mode == "train":
        if batches_per_epoch is None:
            batches_per_epoch = max(1, ds.num_samples * ds.cfg.windows_per_clip // (ds.world_size * batch_size))
        per_worker = math.ceil(batches_per_epoch / workers)
        ds.with_epoch(per_worker * batch_size)
        nbatches = per_worker * workers
    else:
        nbatches = sum(math.ceil(ds.eval_count(w, workers) / batch_size) for w in range(workers))
    return WindowLoader(ds, nbatches, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                        drop_last=False)
