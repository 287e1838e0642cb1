"""Tar I/O of the encode stage: pixel shard samples in, latent shard members out, with reproducible bytes.

Latent tar members per clip, in this order: `<key>.audio.npy` (float16 [Ca, Ta]), `<key>.json` (the
clip's json plus a "latent" section), `<key>.video.npy` (float16 [F, Cv, h, w]). Members have mtime 0,
owner 0/0 "avbench", mode 0444; `.npy` bytes come from `numpy.save` (no timestamps); JSON has sorted keys.
The tar itself is written by `avbench.io.write_member_tar`, the pixel shards' writer too.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

PIXEL_MEMBERS = ("flac", "json", "mp4")


def read_pixel_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) of a pixel shard, in tar order (the shard stage's salted-hash order)."""
    current, members = None, {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if key != current and current is not None:
                yield current, members
                members = {}
            current = key
            fh = tar.extractfile(info)
            members[ext] = fh.read() if fh is not None else b""
    if current is not None:
        yield current, members


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


