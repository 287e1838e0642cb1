"""Scene-cut: known cuts found within one source frame (CFR and VFR), the clip policy, resume, records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.synthroot import add_synthetic

from avbench.curate.scenes import (
    SceneCutConfig,
    apply_clip_policy,
    read_scenes,
    read_scenes_meta,
    scene_cut_sources,
    scenes_path,
)
from avbench.curate.spec import ClipPolicy, DatasetSpec, SceneDetection, SyntheticSource


def _spec(**kw) -> DatasetSpec:
    return DatasetSpec(name="t", description="", target_hours=0.01, sources=(SyntheticSource(),), **kw)


def test_clip_policy_skip_split_drop():
    policy = ClipPolicy(skip_start_s=10.0, max_clip_s=34.0, min_clip_s=1.6)
    cuts, end = [4.0, 11.0, 12.0, 90.0, 91.5], 100.0
    spans = apply_clip_policy(cuts, end, policy)
    # [0,4) skipped; [4,11) → [10,11) too short; [11,12) too short; [12,90) = 78 s → 3 × 26 s;
    # [90,91.5) too short; [91.5,100) kept.
    assert [(round(a, 6), round(b, 6), i) for a, b, i in spans] == [
        (12.0, 38.0, 3), (38.0, 64.0, 3), (64.0, 90.0, 3), (91.5, 100.0, 5)]
    assert apply_clip_policy([], 10.5, policy) == []
    exact = apply_clip_policy([], 10.0 + 68.0, policy)  # exactly two maxima: two parts, not three
    assert len(exact) == 2 and all(b - a == pytest.approx(34.0) for a, b, _ in exact)


def _nearest_frame_gap(times: np.ndarray, t: float) -> float:
    """The source frame interval around time t (the 'one source frame' tolerance)."""
    j = int(np.searchsorted(times, t - 1e-9))
    return float(max(times[min(j + 1, len(times) - 1)] - times[j], times[j] - times[max(j - 1, 0)]))


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_within_one_frame_cfr_and_vfr(tmp_path, detector):
    truths = {"cfr": add_synthetic(tmp_path, "cfr", 21, 16.0),
              "vfr": add_synthetic(tmp_path, "vfr", 22, 16.0, vfr=True)}
    spec = _spec(clip=ClipPolicy(skip_start_s=2.0), scenes=SceneDetection(detector=detector))
    summary = scene_cut_sources(spec, tmp_path, SceneCutConfig(workers=1, progress=False))
    assert (summary.done, summary.failed) == (2, 0)
    for sid, truth in truths.items():
        meta = read_scenes_meta(tmp_path, sid)
        times = np.array(truth["frame_times_s"])
        found, want = meta["cuts"], truth["scene_cuts_s"]
        assert len(found) == len(want) >= 4, (sid, found, want)
        for f, w in zip(found, want):
            assert abs(f - w) <= _nearest_frame_gap(times, w) + 1e-6, (sid, f, w)
        # Provenance in every row and in the schema metadata.
        table = read_scenes(tmp_path, sid)
        assert set(table["detector"]) == {detector}
        params = json.loads(table["detector_params"].iloc[0])
        assert params["threshold"] == (27.0 if detector == "content" else 3.0)
        assert set(table["scenedetect_version"]) == {meta["scenedetect_version"]} and meta["scenedetect_version"]
        # The policy: nothing before skip_start, every span within [min, max], spans follow the cuts.
        assert (table["start"] >= 2.0).all()
        lengths = table["end"] - table["start"]
        assert ((lengths >= 1.6) & (lengths <= 34.0)).all()
        bounds = set(np.round(found, 6)) | {2.0, round(meta["video_end"], 6)}
        assert set(np.round(table["start"], 6)) <= bounds and set(np.round(table["end"], 6)) <= bounds


def test_threshold_override_is_recorded_and_resume_skips(tmp_path):
    add_synthetic(tmp_path, "a", 31, 6.0)
    spec = _spec(clip=ClipPolicy(skip_start_s=0.0))
    cfg = SceneCutConfig(workers=1, threshold=200.0, progress=False)  # nothing reaches 200: one scene
    assert scene_cut_sources(spec, tmp_path, cfg).done == 1
    meta = read_scenes_meta(tmp_path, "a")
    assert meta["cuts"] == [] and meta["detector_params"]["threshold"] == 200.0
    assert len(read_scenes(tmp_path, "a")) == 1
    before = scenes_path(tmp_path, "a").stat().st_mtime_ns
    again = scene_cut_sources(spec, tmp_path, SceneCutConfig(workers=1, progress=False))
    assert (again.done, again.skipped) == (0, 1)
    assert scenes_path(tmp_path, "a").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="--detector"):
        scene_cut_sources(spec, tmp_path, SceneCutConfig(detector="hash", progress=False))


def test_a_resumed_scene_cut_removes_the_temp_table_a_kill_left(tmp_path):
    add_synthetic(tmp_path, "a", 32, 4.0)
    spec = _spec(clip=ClipPolicy(skip_start_s=0.0))
    leftover = tmp_path / "scenes" / ".tmp-a.parquet.x1y2z3.parquet"  # atomic_path's temp name
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"PAR1")
    other = tmp_path / "scenes" / ".tmp-b.parquet.q.parquet"  # another source's: not this job's to remove
    other.write_bytes(b"PAR1")
    assert scene_cut_sources(spec, tmp_path, SceneCutConfig(workers=1, progress=False)).done == 1
    assert not leftover.exists() and other.exists()
