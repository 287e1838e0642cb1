"""Bad sources are reported one per source with a reason; the run finishes and says how many failed."""

from __future__ import annotations

import json

from support.synthroot import add_record, add_synthetic
from typer.testing import CliRunner

from avbench.cli import app
from avbench.curate.synthetic import render_synthetic

SPEC = """
name = "bad"
description = "bad inputs"
target_hours = 0.01
[[sources]]
kind = "synthetic"
count = 1
[clip]
skip_start_s = 0.0
[output]
sizes = [32]
"""


def test_bad_sources_fail_alone_with_reasons(tmp_path):
    root = tmp_path / "root"
    add_synthetic(root, "good", 1, 6.0)
    add_synthetic(root, "noaudio", 2, 6.0, with_audio=False)
    add_synthetic(root, "short", 3, 0.5)
    tiny = dict(width=320, height=180)
    render_synthetic(tmp_path / "t.mp4", 4, 6.0, **tiny)  # moov atom at the end: unreadable when cut
    data = (tmp_path / "t.mp4").read_bytes()
    (tmp_path / "t.mp4").write_bytes(data[: len(data) * 6 // 10])
    add_record(root, "truncated", tmp_path / "t.mp4", 6.0)
    render_synthetic(tmp_path / "t.mkv", 5, 6.0, **tiny)  # readable header, missing tail
    data = (tmp_path / "t.mkv").read_bytes()
    (tmp_path / "t.mkv").write_bytes(data[: len(data) // 2])
    add_record(root, "truncated-mkv", tmp_path / "t.mkv", 6.0)
    render_synthetic(tmp_path / "c.mp4", 6, 6.0, **tiny)
    data = bytearray((tmp_path / "c.mp4").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = bytes(3000)  # a corrupt stretch in the middle of the media data
    (tmp_path / "c.mp4").write_bytes(bytes(data))
    add_record(root, "corrupt", tmp_path / "c.mp4", 6.0)
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC)

    runner = CliRunner()
    r1 = runner.invoke(app, ["scene-cut", str(spec), "--root", str(root), "--workers", "2", "--no-progress"])
    r2 = runner.invoke(app, ["resample", str(spec), "--root", str(root), "--workers", "2", "--no-progress"])
    assert r1.exit_code == 1 and r2.exit_code == 1, (r1.output, r2.output)
    assert "scene-cut: 3 done, 0 already done, 3 failed (of 6 sources)" in r1.output
    # the corrupt source is partial, not failed: its clips before the damage are kept
    assert "resample: 2 done, 0 already done, 1 failed, 3 failed in an earlier stage (of 6 sources)" in r2.output

    def reason(stage, sid):
        rec = json.loads((root / "failures" / stage / f"{sid}.json").read_text())
        assert rec["status"] == "failed" and rec["error_class"] in ("permanent", "transient")
        assert "\n" not in rec["error"] and sid in rec["error"]  # one line, names the source
        return rec["error"]

    assert "no audio stream" in reason("scene-cut", "noaudio")
    assert "too short" in reason("scene-cut", "short")
    assert "cannot be opened" in reason("scene-cut", "truncated")
    assert "truncated" in reason("resample", "truncated-mkv")
    corrupt = json.loads((root / "clips" / "corrupt" / "clips.json").read_text())
    assert corrupt["status"] == "partial" and corrupt["damage_at_s"] > 0
    assert not (root / "failures" / "resample" / "corrupt.json").exists()
    assert (root / "clips" / "good" / "clips.json").exists()

    # Rerun: finished sources are skipped, failed ones are retried (and fail again).
    r3 = runner.invoke(app, ["resample", str(spec), "--root", str(root), "--workers", "1", "--no-progress"])
    assert "resample: 0 done, 2 already done, 1 failed" in r3.output
