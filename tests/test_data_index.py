"""The shard index format: paths confined to ROOT/shards/, digests verified (`avbench verify`, loader)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avbench.cli import app
from avbench.data.windows import WindowConfig, WindowDataset
from avbench.dataset_index import NotADatasetRoot, load_index, verify_root
from avbench.errors import DataError


@pytest.fixture
def root(demo_dataset, tmp_path) -> Path:
    return Path(shutil.copytree(demo_dataset, tmp_path / "root", ignore=shutil.ignore_patterns("sources")))


def _rewrite_index(root: Path, edit) -> None:
    path = root / "shards" / "index.json"
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a member's payload: the tar still parses
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("bad", ["../../x.tar", "/etc/x.tar", "64/train/../../../x.tar", "64/train/a.txt"])
def test_a_path_outside_the_shards_folder_is_refused(root, tmp_path, bad):
    outside = tmp_path / "x.tar"
    shutil.copy(next((root / "shards").rglob("*.tar")), outside)  # a real tar waits there: it must not be read

    def edit(index):
        index["shards"][0]["path"] = bad

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match="not a .tar inside the shards/ folder") as e:
        load_index(root)
    assert "\n" not in str(e.value) and "index.json" in str(e.value)
    with pytest.raises(DataError):
        WindowDataset(root, WindowConfig(size=64, split="train"))


def test_verify_finds_a_damaged_and_a_missing_shard(root):
    assert verify_root(root) == []
    rows = load_index(root)["shards"]
    _flip_a_byte(root / "shards" / rows[0]["path"])
    (root / "shards" / rows[-1]["path"]).unlink()
    problems = verify_root(root)
    assert len(problems) == 2
    assert "sha256" in problems[0] and rows[0]["path"].split("/")[-1] in problems[0]
    assert "missing" in problems[1]


def test_verify_command_exit_codes(root, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(root)])
    assert ok.exit_code == 0, ok.output
    assert "all match" in ok.output
    not_root = runner.invoke(app, ["verify", str(tmp_path / "nothing-here")])
    assert not_root.exit_code == 2 and "not a built dataset root" in not_root.output
    _flip_a_byte(next((root / "shards").rglob("*.tar")))
    bad = runner.invoke(app, ["verify", str(root)])
    assert bad.exit_code == 1 and "sha256" in bad.output and "1 of" in bad.output


def test_loader_verify_option_checks_digests_before_reading(root):
    WindowDataset(root, WindowConfig(size=64, split="train", verify=True))  # intact: accepted
    rows = [r for r in load_index(root)["shards"] if r["split"] == "train"]
    _flip_a_byte(root / "shards" / rows[0]["path"])
    WindowDataset(root, WindowConfig(size=64, split="train"))  # without the option nothing reads the digest
    with pytest.raises(DataError, match="sha256"):
        WindowDataset(root, WindowConfig(size=64, split="train", verify=True))


def test_a_folder_without_an_index_is_not_a_dataset_root(tmp_path):
    with pytest.raises(NotADatasetRoot, match="not a built dataset root"):
        verify_root(tmp_path)
