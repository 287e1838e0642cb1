"""Where avbench keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

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
    """`demo` → `manifests/demo.toml` (cwd first, then the repository's); a path is returned as is."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    for base in (Path.cwd() / "manifests", manifests_dir()):
        cand = base / f"{name_or_path}.toml"
        if cand.exists():
            return cand
    raise FileNotFoundError(
        f"no dataset spec named {name_or_path!r}: looked for manifests/{name_or_path}.toml in "
        f"{Path.cwd()} and {manifests_dir()}; pass a path to a .toml spec instead"
    )
