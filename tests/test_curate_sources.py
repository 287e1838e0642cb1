"""Local `file` sources: identified by their bytes (not their path), listed paths that cannot be read
fail alone and say why, and failure messages name the user's file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from support.fetchkit import faststart, render_bytes

from avbench.curate.build import BuildConfig, build_dataset
from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.lock import write_lock
from avbench.curate.resolve import resolve_entries
from avbench.curate.spec import load_spec

SPEC = """name = "local"
description = "local files"
target_hours = 0.01
[[sources]]
kind = "file"
paths = [{paths}]
[clip]
skip_start_s = 0.5
min_clip_s = 1.6
[output]
sizes = [32]
samples_per_shard = 4
[split]
train = 1.0
val = 0.0
test = 0.0
salt = "x"
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media")
    # 6 s: the synthetic plan puts a silent scene at 1-3 s, so a clip of the last scene passes the filters
    return {"a": render_bytes(tmp, 31, duration_s=6.0), "b": render_bytes(tmp, 32, duration_s=6.0),
            "silent": render_bytes(tmp, 33, duration_s=4.0, with_audio=False)}


def _folder(base: Path, files: dict[str, bytes], paths: list[str]) -> Path:
    """A spec in `base` listing `paths`, with `files` (name → bytes) under base/media."""
    (base / "media").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (base / "media" / name).write_bytes(data)
    spec = base / "spec.toml"
    spec.write_text(SPEC.format(paths=", ".join(json.dumps(p) for p in paths)))
    return spec


def _download(spec: Path, root: Path):
    return download_sources(DownloadConfig(root=root, spec=str(spec), progress=False))


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_the_same_spec_and_bytes_elsewhere_give_the_same_ids_records_and_shards(tmp_path, media):
    """Before: ids were sha256 of the absolute path, so a copied project had other ids and other shards."""
    indexes, records = [], []
    for where in ("one", "two/deeper"):
        spec = _folder(tmp_path / where, {"a.mp4": media["a"], "b.mp4": media["b"]}, ["media/*.mp4"])
        root = tmp_path / where / "root"
        summary = build_dataset(BuildConfig(spec=str(spec), root=root, workers=1, progress=False))
        assert summary.failed == 0, summary.lines()
        assert summary.shard.samples.get("32/train", 0) > 0, summary.lines()
        indexes.append(_sha((root / "shards" / "index.json").read_bytes()))
        recs = {p.stem: json.loads(p.read_text()) for p in sorted((root / "records").glob("*.json"))}
        records.append(recs)
    assert sorted(records[0]) == sorted(records[1]) == sorted(f"file-{_sha(media[k])[:16]}" for k in "ab")
    for sid, rec in records[0].items():
        other = records[1][sid]
        assert rec["paths"] != other["paths"]  # provenance: where the bytes were found
        drop = ("paths", "id")
        assert {k: v for k, v in rec.items() if k not in drop} == {k: v for k, v in other.items() if k not in drop}
    assert indexes[0] == indexes[1]


def test_the_same_bytes_under_two_paths_are_one_source_with_both_paths(tmp_path, media):
    spec = _folder(tmp_path, {"a.mp4": media["a"], "copy-of-a.mp4": media["a"]}, ["media/a.mp4"])
    # also listed by a second [[sources]] table: still one source
    spec.write_text(spec.read_text().replace("[clip]", '[[sources]]\nkind = "file"\npaths = ["media/copy-of-a.mp4"]\n[clip]'))
    (entry,) = resolve_entries(load_spec(spec))
    assert entry.source_id == f"file-{_sha(media['a'])[:16]}"
    (rec,) = _download(spec, tmp_path / "root").records
    assert rec["status"] == "ok"
    assert rec["paths"] == sorted(str(tmp_path / "media" / n) for n in ("a.mp4", "copy-of-a.mp4"))


def test_a_directory_in_paths_is_reported_as_a_directory(tmp_path, media):
    spec = _folder(tmp_path, {"a.mp4": media["a"]}, ["media/a.mp4", "media"])
    summary = _download(spec, tmp_path / "root")
    by_status = {r["status"]: r for r in summary.records}
    assert set(by_status) == {"ok", "failed"}
    failed = by_status["failed"]
    assert failed["error_class"] == "permanent"
    assert f"{tmp_path / 'media'}: is a directory" in failed["error"] and "/*.mp4" in failed["error"]
    assert "file not found" not in failed["error"]


def test_one_symlink_loop_fails_only_that_source(tmp_path, media):
    spec = _folder(tmp_path, {"a.mp4": media["a"]}, ["media/*.mp4"])
    os.symlink("loop.mp4", tmp_path / "media" / "loop.mp4")  # points at itself
    entries = resolve_entries(load_spec(spec))  # before: the whole spec failed to resolve
    assert len(entries) == 2
    summary = _download(spec, tmp_path / "root")
    assert (summary.ok, summary.failed_permanent) == (1, 1)
    (failed,) = [r for r in summary.records if r["status"] == "failed"]
    assert failed["error"].startswith(f"{tmp_path / 'media' / 'loop.mp4'}: symlink loop")


def test_failure_lines_name_the_users_file(tmp_path, media):
    spec = _folder(tmp_path, {"my-concert.mp4": media["silent"]}, ["media/my-concert.mp4"])
    (rec,) = _download(spec, tmp_path / "root").records
    assert rec["status"] == "failed" and rec["error_class"] == "permanent"
    assert rec["error"] == f"{tmp_path / 'media' / 'my-concert.mp4'}: no audio stream"
    assert rec["title"] == "my-concert.mp4"


def test_a_truncated_local_file_is_permanent_and_not_probed_again(tmp_path, media):
    """A cut file announcing its full length: transient for a download (fetch again), but a local file
    reads the same every time, so retrying it on every run helps nothing."""
    data = faststart(render_bytes(tmp_path, 34, duration_s=8.0), tmp_path)
    spec = _folder(tmp_path, {"cut.mp4": data[: int(len(data) * 0.6)]}, ["media/cut.mp4"])
    root = tmp_path / "root"
    (rec,) = _download(spec, root).records
    assert (rec["status"], rec["error_class"]) == ("failed", "permanent"), rec["error"]
    assert "ends early" in rec["error"] and "cut.mp4" in rec["error"]
    again = _download(spec, root)
    assert again.skipped == 1 and again.records[0]["attempts"] == 1 and again.exit_code == 1


def test_a_lock_row_whose_file_changed_is_refused(tmp_path, media):
    spec = _folder(tmp_path, {"a.mp4": media["a"]}, ["media/a.mp4"])
    lock = tmp_path / "lock.csv"
    write_lock(lock, resolve_entries(load_spec(spec)))
    (tmp_path / "media" / "a.mp4").write_bytes(media["b"])
    (rec,) = download_sources(DownloadConfig(root=tmp_path / "root", lock=lock, progress=False)).records
    assert rec["status"] == "failed" and rec["error_class"] == "permanent"
    assert "its bytes changed since the lock file pinned them" in rec["error"]
