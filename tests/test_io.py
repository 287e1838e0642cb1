"""Atomic writes, hashes, partitions and manifest lookup: the helpers every stage leans on."""

from __future__ import annotations

import hashlib
import json

import pytest

from avbench.curate.partition import Partition
from avbench.io import atomic_path, atomic_write_json, sha256_file
from avbench.paths import resolve_manifest


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_existing(tmp_path):
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")
    with atomic_path(final) as tmp:
        assert tmp.name.startswith(".tmp-") and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
        assert final.read_bytes() == b"old"  # not visible until the block ends
    assert final.read_bytes() == b"new"
    assert sha256_file(final) == hashlib.sha256(b"new").hexdigest()


def test_atomic_json_is_canonical(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "a.json").read_text()
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")
    assert json.loads(text) == {"a": [1, 2], "b": 1}


def test_partitions_cover_everything_once():
    ids = [f"src{i:03d}" for i in range(23)]
    parts = [Partition.parse(f"{i}/4").select(reversed(ids)) for i in range(4)]
    flat = sorted(x for p in parts for x in p)
    assert flat == ids
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert Partition.parse(None).select(ids) == ids


@pytest.mark.parametrize("bad", ["3", "4/4", "-1/2", "a/b", "1/0"])
def test_partition_rejects_bad_text(bad):
    with pytest.raises(ValueError, match="--partition"):
        Partition.parse(bad)


def test_manifest_lookup_errors_name_the_search_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        resolve_manifest("nope")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    """mkstemp makes 0600 files: without a chmod a teammate could not read shards or checkpoints."""
    import os
    import stat

    from avbench.io import atomic_write_bytes, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "b.json", {"k": 1})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
