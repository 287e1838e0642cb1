"""`avbench info` on folders that are not dataset roots: one line and exit 2, not an empty table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from avbench.curate.info import root_info
from avbench.curate.lock import write_lock
from avbench.curate.sources import SourceEntry
from avbench.errors import EXIT_BAD_INPUT, NotADatasetRoot


def test_a_folder_that_is_not_a_root_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(NotADatasetRoot, match="not a dataset root"):
        root_info(tmp_path)
    r = subprocess.run([sys.executable, "-m", "avbench", "info", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == EXIT_BAD_INPUT == 2, r.stdout + r.stderr
    assert r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert f"{tmp_path}: not a dataset root" in line and "avbench download" in line


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(NotADatasetRoot, match="no such dataset root"):
        root_info(tmp_path / "nope")


def test_a_root_with_only_a_lock_file_lists_its_pending_sources(tmp_path):
    write_lock(tmp_path / "lock.csv", [SourceEntry(source_id="synth-0-0", kind="synthetic", id="1", duration_s=2.0)])
    info = root_info(tmp_path)
    assert [(r["source_id"], r["status"]) for r in info.rows] == [("synth-0-0", "pending")]
