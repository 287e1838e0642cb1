"""Small file helpers shared by every stage: atomic writes, content hashes and reproducible tars.

Every file a later stage may read is written to a temporary name in the same directory and renamed into
place, so a `kill -9` at any moment never leaves a partial file under its final name.

Shard tars (pixel shards of `curate/shard.py`, latent shards of `encode/shards.py`) are written by one
function so both get the same reproducible bytes: GNU format, members sorted by extension within a
sample, mtime 0, owner 0/0 "avbench", mode 0444; member JSON has sorted keys.

Permissions: `mkstemp` creates its file with mode 0600 whatever the umask, which would leave every
output (shards, index, lock, checkpoints, leaderboard) unreadable to the rest of a group on a shared
cluster. The temp file is therefore set to what `open()` would have given (0666 minus the umask)
before the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask. Reading it means setting it, so the set-and-restore is serialised against
    other threads of this module; on Linux /proc says it without touching it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `final`; on clean exit fsync it and rename it to `final`.

    On an exception the temporary file is removed and `final` is left untouched. The temporary name
    starts with `.tmp-`; note that pathlib's `glob("*.ext")` on Python 3.11 still matches dot files, so
    readers that glob for completed files use `[!.]*.ext`. A `kill -9` can leave such a file behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{final.name}.", suffix=suffix or final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


def atomic_write_json(final: str | os.PathLike[str], obj: Any) -> None:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline), written atomically."""
    atomic_write_text(final, json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(obj: Any) -> bytes:
    """A tar member's JSON: sorted keys, 1-space indent, UTF-8, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o444
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "avbench"
    return ti


def write_member_tar(path: str | os.PathLike[str],
                     samples: Iterable[tuple[str, Mapping[str, bytes]]]) -> tuple[int, str]:
    """Write `<key>.<ext>` members of each (key, {ext: bytes}) sample, in the given sample order,
    atomically; returns (bytes, sha256). `samples` may be a generator (members read one sample at a time)."""
    path = Path(path)
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, members in samples:
            for ext, data in sorted(members.items()):
                tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
    return path.stat().st_size, sha256_file(path)
