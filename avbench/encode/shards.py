"""Tar I/O of the encode stage: pixel shard samples in, latent shard members out, with reproducible bytes.

Latent tar members per clip, in this order: `<key>.audio.npy` (float16 [Ca, Ta]), `<key>.json` (the
clip's json plus a "latent" section), `<key>.video.npy` (float16 [F, Cv, h, w]). Members have mtime 0,
owner 0/0 "avbench", mode 0444; `.npy` bytes come from `numpy.save` (no timestamps); JSON has sorted keys.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from avbench.io import atomic_path, sha256_file

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


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o444
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "avbench"
    return ti


def write_latent_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> tuple[int, str]:
    """Write one latent shard atomically (temp file + rename); returns (bytes, sha256)."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, members in samples:
            for ext, data in sorted(members.items()):
                tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
    return path.stat().st_size, sha256_file(path)
