"""A `youtube` source's `ranges` restrict its clips; the clip policy still applies inside them."""

from __future__ import annotations

import pytest

from avbench.curate.scenes import apply_clip_policy
from avbench.curate.spec import ClipPolicy

POLICY = ClipPolicy(skip_start_s=10.0, max_clip_s=34.0, min_clip_s=1.6)


def test_without_ranges_the_policy_alone_decides():
    spans = apply_clip_policy([20.0, 100.0], 130.0, POLICY)
    # the 80 s scene needs ceil(80 / 34) = 3 equal parts
    assert [(round(a, 6), round(b, 6), i) for a, b, i in spans] == [
        (10.0, 20.0, 0), (20.0, 46.666667, 1), (46.666667, 73.333333, 1), (73.333333, 100.0, 1), (100.0, 130.0, 2)]


def test_ranges_clip_scenes_and_drop_what_lies_outside():
    spans = apply_clip_policy([20.0, 100.0], 130.0, POLICY, keep=[(110.0, 200.0), (5.0, 30.0)])
    # (5, 30) loses its first 5 s to skip-start and is cut at the scene boundary at 20 s;
    # scene 1 is kept only up to 30 s; (110, 200) is cut at the end of the video.
    assert spans == [(10.0, 20.0, 0), (20.0, 30.0, 1), (110.0, 130.0, 2)]
    for a, b, _ in spans:
        assert b - a >= POLICY.min_clip_s


def test_a_range_shorter_than_one_clip_gives_nothing():
    assert apply_clip_policy([], 60.0, POLICY, keep=[(40.0, 41.0)]) == []


@pytest.mark.parametrize("length", [35.0, 68.5])
def test_long_ranges_are_split_into_equal_parts(length):
    spans = apply_clip_policy([], 200.0, POLICY, keep=[(50.0, 50.0 + length)])
    widths = [b - a for a, b, _ in spans]
    assert len(spans) == (2 if length < 68 else 3)
    assert max(widths) <= POLICY.max_clip_s and max(widths) - min(widths) < 1e-9


def test_record_ranges_reach_the_clip_table(tmp_path):
    import json

    from avbench.curate.scenes import SceneCutConfig, read_scenes, read_scenes_meta, scene_cut_sources
    from avbench.curate.spec import parse_spec

    from support.synthroot import add_synthetic

    add_synthetic(tmp_path, "synth-0-0", seed=3, duration_s=14.0)
    rec_path = tmp_path / "records" / "synth-0-0.json"
    rec = json.loads(rec_path.read_text())
    rec["ranges"] = [[3.0, 7.5]]
    rec_path.write_text(json.dumps(rec))
    spec = parse_spec({"name": "r", "description": "ranges", "target_hours": 0.01,
                       "sources": [{"kind": "synthetic", "count": 1}], "clip": {"skip_start_s": 1.0}})
    summary = scene_cut_sources(spec, tmp_path, SceneCutConfig(workers=1, progress=False))
    assert summary.failed == 0
    table = read_scenes(tmp_path, "synth-0-0")
    assert len(table) >= 1
    assert table["start"].min() >= 3.0 and table["end"].max() <= 7.5
    assert read_scenes_meta(tmp_path, "synth-0-0")["ranges"] == [[3.0, 7.5]]
