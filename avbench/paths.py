"""Where avbench keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

from avbench.errors import MissingInputError

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """The avbench cache (weights, reference statistics). `AVBENCH_CACHE` overrides `~/.cache/avbench`."""
    env = os.environ.get("AVBENCH_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avbench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def manifests_dir() -> Path:
    return REPO_ROOT / "manifests"


def resolve_manifest(name_or_path: str | os.PathLike[str]) -> Path:
    """`demo` → `manifests/demo.toml` (cwd first, then the repository's); a file path is returned as is.

    A bare name is looked up in `manifests/` even when a directory of that name exists (`avbench download
    demo --root demo` creates one).
    """
    p = Path(name_or_path)
    if p.is_file() or p.suffix == ".toml":
        return p
    if len(p.parts) == 1:
        for base in (Path.cwd() / "manifests", manifests_dir()):
            cand = base / f"{p.name}.toml"
            if cand.is_file():
                return cand
    if p.is_dir():
        raise MissingInputError(f"{p}: is a directory; pass the path of a dataset spec (.toml) or a name in manifests/")
    raise MissingInputError(
        f"no dataset spec named {str(name_or_path)!r}: looked for manifests/{p.name}.toml in "
        f"{Path.cwd()} and {manifests_dir()}; pass a path to a .toml spec instead"
    )
