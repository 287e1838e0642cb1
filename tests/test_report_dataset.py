"""`avbench report ROOT` on the demo dataset: the page renders in headless Chromium (no broken image,
every <video>/<audio> readable), the plots are real PNGs, the bytes are the same for the same root, and
the numbers on the page are the root's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from support.browser import assert_rendered, render
from typer.testing import CliRunner

from avbench.cli import app
from avbench.report.dataset import GRID_CLIPS, dataset_report


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dataset_report_renders_in_chromium(demo_dataset, tmp_path):
    # a copy of the root (no sources/: the report must not need them), so the session fixture stays as built
    root = tmp_path / "root"
    shutil.copytree(demo_dataset, root, ignore=shutil.ignore_patterns("sources"))
    res = CliRunner().invoke(app, ["report", str(root)])
    assert res.exit_code == 0, res.output
    page = root / "report" / "index.html"  # the default place
    assert page.is_file() and "dataset report" in res.output

    pngs = sorted((root / "report").rglob("*.png"))
    assert {"clip_lengths.png", "hours_per_split.png", "scene_lengths.png"} <= {p.name for p in pngs}
    for png in pngs:  # every picture decodes outside the browser too
        with Image.open(png) as im:
            im.load()
            assert im.width > 0 and im.height > 0, png

    shot = tmp_path / "dataset-report.png"
    facts = render(page, shot)
    assert_rendered(facts, shot)
    assert facts["title"].startswith("Dataset report: testdemo")
    videos = [m for m in facts["media"] if m["tag"] == "video"]
    audios = [m for m in facts["media"] if m["tag"] == "audio"]
    kept = json.loads((root / "shards" / "stats.json").read_text())["total"]["clips_kept"]
    assert len(videos) == len(audios) == min(GRID_CLIPS, kept) > 0
    assert all(m["ready_state"] >= 1 for m in facts["media"]), facts["media"]  # metadata read: playable
    assert facts["images"] >= 3 + 2 * len(videos)  # plots + a frame and a waveform per clip
    with Image.open(shot) as im:
        assert im.width >= 800 and im.height >= 800


def test_dataset_report_bytes_depend_only_on_the_root(demo_dataset, tmp_path):
    first = dataset_report(demo_dataset, tmp_path / "a").parent
    (first / "media" / "stale.png").write_bytes(b"left over")  # an earlier report's leftovers are cleared
    again = dataset_report(demo_dataset, first).parent
    second = dataset_report(demo_dataset, tmp_path / "b").parent
    assert _tree(again) == _tree(second) and "media/stale.png" not in _tree(again)
    html = (second / "index.html").read_text(encoding="utf-8")
    assert str(demo_dataset) not in html  # media are copied beside the page, not linked into the root
    assert 'src="/' not in html and "http" not in html  # relative links only, no CDN


def test_dataset_report_shows_the_roots_numbers(demo_dataset, tmp_path):
    html = dataset_report(demo_dataset, tmp_path / "r").read_text(encoding="utf-8")
    stats = json.loads((demo_dataset / "shards" / "stats.json").read_text())
    assert stats["spec"]["hash"] in html
    rejected = []
    for table in sorted((demo_dataset / "clips").glob("*/clips.json")):
        rejected += [c for c in json.loads(table.read_text())["clips"] if not c["keep"]]
    assert rejected, "the demo is meant to have filtered clips"
    assert f"{len(rejected)} of " in html
    first = min(rejected, key=lambda c: c["key"])
    assert f"{first['key']}: {', '.join(sorted(first['reasons']))}" in html  # example frame, with its reason
    for reason, n in stats["total"]["filtered_by_reason"].items():
        assert f"<td>{reason}</td>" in html and f"<td>{n}</td>" in html
    for sp, st in stats["splits"].items():
        assert f"<td>{sp}</td><td>{st['sources']}</td><td>{st['hours_in']:.4f}</td>" in html


def test_report_of_a_folder_that_is_nothing_reportable_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a dataset root" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such file or folder" in res.output
