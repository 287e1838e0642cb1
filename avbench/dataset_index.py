"""The shard index format (`ROOT/shards/index.json`): write, read, validate, verify.

It lives at the bottom layer because two packages of one layer need it: `curate` writes it (the shard
stage) and `data` reads it (the loader), and neither may import the other.

Format "avbench-shards-v1": `{"format", "spec": {name, hash}, "split_salt", "fps", "sample_rate",
"samples_per_shard": {size: n}, "shards": [{"path", "size", "split", "samples", "bytes", "sha256"}]}`,
with every `path` relative to `ROOT/shards/` and confined to it: an entry that leaves that folder
(`../../x.tar`, an absolute path) makes the whole index unusable, because a reader must never open a
file the dataset does not own. `verify_root` checks each tar's size and sha256 against its row.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from avbench.errors import DataError
from avbench.io import atomic_write_json, sha256_file

INDEX_FORMAT = "avbench-shards-v1"
ROW_KEYS = ("path", "size", "split", "samples", "bytes", "sha256")


class NotADatasetRoot(DataError, FileNotFoundError):
    """The folder has no shard index (not a dataset root, or the shard stage has not finished).
    Also a FileNotFoundError, which callers caught before this class existed."""


def index_path(root: str | Path) -> Path:
    return Path(root) / "shards" / "index.json"


def write_index(root: str | Path, index: dict[str, Any]) -> Path:
    """Validate and write atomically (the index is the shard stage's completion marker)."""
    path = index_path(root)
    _validate(index, path)
    atomic_write_json(path, index)
    return path


def load_index(root: str | Path) -> dict[str, Any]:
    """Read and validate `ROOT/shards/index.json`; one-line `DataError`s name the file and the fix."""
    path = index_path(root)
    if not path.is_file():
        raise NotADatasetRoot(f"{path}: no shard index; {root} is not a built dataset root (run "
                              f"`avbench shard SPEC --root {root}` or `avbench build` first, or check the path)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); rerun `avbench shard` to rewrite it") from None
    _validate(index, path)
    return index


def _validate(index: Any, path: Path, fmt: str = INDEX_FORMAT, command: str = "shard") -> None:
    """The checks both index formats share; `command` is the one that rewrites the file."""
    fix = f"rerun `avbench {command}` to rewrite it"
    if not isinstance(index, dict) or index.get("format") != fmt:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise DataError(f"{path}: format {got!r}, expected {fmt!r}; {fix}")
    rows = index.get("shards")
    if not isinstance(rows, list):
        raise DataError(f"{path}: 'shards' must be a list of rows; {fix}")
    for i, row in enumerate(rows):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{path}: shard row {i} lacks {', '.join(missing)}; {fix}")
        _confined(row["path"], path)


def _confined(rel: Any, path: Path) -> PurePosixPath:
    p = PurePosixPath(str(rel))
    if not str(rel) or p.is_absolute() or ".." in p.parts or "\\" in str(rel) or p.suffix != ".tar":
        raise DataError(f"{path}: shard path {rel!r} is not a .tar inside the shards/ folder; the index was "
                        "edited or is not avbench's: rebuild it with `avbench shard`")
    return p


def shard_file(root: str | Path, row: dict[str, Any]) -> Path:
    """The tar of one index row, checked to lie inside `ROOT/shards/` (also through symlinked folders)."""
    base = Path(root) / "shards"
    target = base / _confined(row["path"], index_path(root))
    if target.exists() and not target.resolve().is_relative_to(base.resolve()):
        raise DataError(f"{target}: resolves outside {base} (a symlink); shards must live in the dataset root")
    return target


def check_shard(root: str | Path, row: dict[str, Any]) -> str | None:
    """One line describing what is wrong with one shard (missing, wrong size, wrong sha256), or None."""
    try:
        path = shard_file(root, row)
    except DataError as e:
        return str(e)
    if not path.is_file():
        return f"{path}: missing (listed in shards/index.json); rerun `avbench shard`"
    size = path.stat().st_size
    if size != row["bytes"]:
        return f"{path}: {size} bytes, the index says {row['bytes']}; the file is damaged, rerun `avbench shard`"
    digest = sha256_file(path)
    if digest != row["sha256"]:
        return (f"{path}: sha256 {digest[:16]}…, the index says {str(row['sha256'])[:16]}…; "
                "the file is damaged, rerun `avbench shard`")
    return None


def verify_root(root: str | Path, rows: list[dict[str, Any]] | None = None) -> list[str]:
    """Every problem of a dataset root's shards (empty = all tars match the index).

    Raises NotADatasetRoot / DataError when there is no usable index at all. `rows` restricts the check
    to some rows of the index (the loader verifies only the shards it will read)."""
    index = load_index(root)
    problems = []
    for row in index["shards"] if rows is None else rows:
        problem = check_shard(root, row)
        if problem:
            problems.append(problem)
    return problems


# ---- latent shards (`avbench encode`): ROOT/latents/<vae>/<size>/index.json ---------------------------
# Format "avbench-latents-v1": the pixel index's row keys, with every `path` relative to (and confined to)
# `ROOT/latents/<vae>/<size>/`, plus the codec's description and the latent shapes and rates (written by
# avbench/encode/stage.py, read by avbench/data/latents.py).
LATENT_INDEX_FORMAT = "avbench-latents-v1"


def latent_dir(root: str | Path, vae: str, size: int) -> Path:
    return Path(root) / "latents" / vae / str(size)


def latent_index_path(root: str | Path, vae: str, size: int) -> Path:
    return latent_dir(root, vae, size) / "index.json"


def write_latent_index(root: str | Path, vae: str, size: int, index: dict[str, Any]) -> Path:
    """Validate and write atomically (the encode stage's completion marker)."""
    path = latent_index_path(root, vae, size)
    _validate(index, path, LATENT_INDEX_FORMAT, "encode")
    atomic_write_json(path, index)
    return path


def load_latent_index(root: str | Path, vae: str, size: int) -> dict[str, Any]:
    """Read and validate a latent index; one-line `DataError`s name the file and the fix."""
    path = latent_index_path(root, vae, size)
    if not path.is_file():
        raise NotADatasetRoot(f"{path}: no latent index; run `avbench encode {root} --vae {vae} --size {size}` "
                              "(all partitions, or once unpartitioned) first, or check --vae/--size")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); rerun `avbench encode` to rewrite it") from None
    _validate(index, path, LATENT_INDEX_FORMAT, "encode")
    return index


def latent_shard_file(root: str | Path, vae: str, size: int, row: dict[str, Any]) -> Path:
    """The tar of one latent index row, checked to lie inside `ROOT/latents/<vae>/<size>/`."""
    base = latent_dir(root, vae, size)
    target = base / _confined(row["path"], latent_index_path(root, vae, size))
    if target.exists() and not target.resolve().is_relative_to(base.resolve()):
        raise DataError(f"{target}: resolves outside {base} (a symlink); latent shards must live in the dataset root")
    return target


def check_file(path: Path, nbytes: int, sha256: str, fix: str) -> str | None:
    """One line saying what is wrong with a file that should have this size and digest, or None."""
    if not path.is_file():
        return f"{path}: missing; {fix}"
    if path.stat().st_size != nbytes:
        return f"{path}: {path.stat().st_size} bytes, expected {nbytes}; the file is damaged, {fix}"
    digest = sha256_file(path)
    if digest != sha256:
        return f"{path}: sha256 {digest[:16]}…, expected {str(sha256)[:16]}…; the file is damaged, {fix}"
    return None


def latent_sets(root: str | Path) -> list[tuple[str, int]]:
    """(vae, size) of every latent index under `ROOT/latents/`, sorted."""
    found = []
    for path in sorted(Path(root).glob("latents/*/*/index.json")):
        if path.parent.name.isdigit():
            found.append((path.parent.parent.name, int(path.parent.name)))
    return found


def verify_latent_set(root: str | Path, vae: str, size: int) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, problems) of one latent set: each tar's size and sha256 against its index row.

    Raises DataError when the latent index itself is unusable."""
    index = load_latent_index(root, vae, size)
    fix = f"rerun `avbench encode {root} --vae {vae} --size {size}` (it redoes only the damaged shards)"
    problems = []
    for row in index["shards"]:
        try:
            path = latent_shard_file(root, vae, size, row)
        except DataError as e:
            problems.append(str(e))
            continue
        problem = check_file(path, row["bytes"], row["sha256"], fix)
        if problem:
            problems.append(problem)
    return index["shards"], problems
