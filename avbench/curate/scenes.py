"""`avbench scene-cut`: find hard cuts with PySceneDetect and turn scenes into clip spans.

Per source the stage writes `DIR/scenes/<source_id>.parquet`: one row per `[start, end)` span (seconds
on the source's video timeline, t = 0 at the first video frame), after the spec's clip policy:
skip the first `skip_start_s`, split scenes longer than `max_clip_s` into equal parts, drop spans
shorter than `min_clip_s`. The detector's name, parameters and the PySceneDetect version are columns of
every row and also sit in the parquet schema metadata (with the raw cut list), so the table says how
it was made even when it has no rows.

Detection uses the PyAV backend (PTS-based timecodes since PySceneDetect 0.7, so variable frame rate
sources get exact cut times). Its pictures are made small in the decoder's own pixel format: libswscale
scales each decoded frame straight to about 256 px wide BGR (fast bilinear: what PySceneDetect's own
cv2 INTER_LINEAR shrink amounts to at these factors) through one cached scaler, where PySceneDetect
would convert the full-resolution picture to BGR and then shrink it with OpenCV, and the
H.264 loop filter is skipped for this pass (`skip_loop_filter=all`, about 30 % of a 720p decode): a cut
detector comparing 256 px HSV histograms does not see deblocking. Resample decodes with the loop filter,
so clip pictures are unaffected. Both choices are recorded in `detector_params` ("frames").
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from avbench.curate.partition import Partition
from avbench.curate.records import ready_sources
from avbench.curate.spec import ClipPolicy, DatasetSpec, SceneDetection
from avbench.curate.stage import Job, StageSummary, run_stage, source_label
from avbench.errors import ConfigError, SourceFailure
from avbench.io import atomic_path

DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 3.0}
DETECT_WIDTH = 256  # PySceneDetect's own auto-downscale target (scene_manager.DEFAULT_MIN_WIDTH)
FRAMES = "swscale fast_bilinear to ~256 px wide bgr24, H.264 loop filter skipped, 1 decoder thread"
COLUMNS = ["source_id", "clip_index", "start", "end", "scene_index", "detector", "detector_params",
           "scenedetect_version"]


@dataclass(frozen=True)
class SceneCutConfig:
    """Options of `avbench scene-cut`; `detector`/`threshold` override the spec's `[scenes]` when set."""

    workers: int = field(default=0, metadata={"help": "Parallel worker processes (0 = one per core).", "min": 0})
    partition: Partition = field(default=Partition(0, 1), metadata={
        "help": "Process only slice I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/8."})
    detector: str | None = field(default=None, metadata={
        "help": "content or adaptive (default: the spec's [scenes] detector)."})
    threshold: float | None = field(default=None, metadata={
        "help": "Detector threshold (default: the spec's, else the detector's own)."})
    progress: Any = field(default=True, metadata={"help": "Show a progress bar."})


def scenes_path(root: Path, source_id: str) -> Path:
    return Path(root) / "scenes" / f"{source_id}.parquet"


def effective_detection(spec_scenes: SceneDetection, cfg: SceneCutConfig) -> SceneDetection:
    det = replace(spec_scenes, detector=cfg.detector or spec_scenes.detector)
    if cfg.threshold is not None:
        det = replace(det, threshold=cfg.threshold)
    if det.detector not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"--detector {det.detector!r}: choose one of {', '.join(DEFAULT_THRESHOLDS)}")
    return det


def detector_params(det: SceneDetection) -> dict[str, Any]:
    """The parameters handed to PySceneDetect, as recorded in the table."""
    threshold = det.threshold if det.threshold is not None else DEFAULT_THRESHOLDS[det.detector]
    return {"threshold": threshold, "min_scene_len_s": det.min_scene_s, "downscale": det.downscale or "auto",
            "backend": "pyav", "frames": FRAMES}


def _make_detector(det: SceneDetection):
    from scenedetect import AdaptiveDetector, ContentDetector

    p = detector_params(det)
    if det.detector == "content":
        return ContentDetector(threshold=p["threshold"], min_scene_len=det.min_scene_s)
    return AdaptiveDetector(adaptive_threshold=p["threshold"], min_scene_len=det.min_scene_s)


def detect_cuts(path: str | Path, det: SceneDetection) -> tuple[list[float], float]:
    """Cut times (seconds, the first frame of each new scene) and the end of the video."""
    from scenedetect import SceneManager

    video = _open_small(str(path), det.downscale)
    manager = SceneManager()
    manager.auto_downscale = False  # the pictures come small from the decoder
    manager.downscale = 1
    manager.add_detector(_make_detector(det))
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    if not scenes:
        raise SourceFailure("permanent", f"{path}: no video frames could be decoded; the file is damaged, "
                            "re-download (or replace) it")
    end = float(scenes[-1][1].seconds)
    # The flash filter can report a "cut" at the very last frame when the stream ends; a scene shorter
    # than the minimum scene length is not a scene.
    cuts = [float(s.seconds) for s, _ in scenes[1:] if end - float(s.seconds) >= det.min_scene_s]
    return cuts, end


def _small_size(width: int, height: int, downscale: int) -> tuple[int, int]:
    """The detection picture size: PySceneDetect's rule (factor = width / 256 when wider, else the
    spec's integer `downscale`), rounded like its own cv2.resize call."""
    factor = downscale if downscale else max(1.0, width / DETECT_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


@functools.lru_cache(maxsize=1)
def _small_frames_class():
    from av.video.reformatter import VideoReformatter
    from scenedetect.backends.pyav import VideoStreamAv

    class SmallFrames(VideoStreamAv):
        """PySceneDetect's PyAV stream (its timecodes, EOF and damaged-packet handling), returning each
        picture already small and BGR from libswscale instead of converting it at full size."""

        def __init__(self, path: str, downscale: int):
            # suppress_output: without it PySceneDetect restores libav's default log callback for the
            # whole process, and every later libx264 encode (resample in the same worker) prints ~17
            # lines per clip.
            super().__init__(path, suppress_output=True)
            # set before the first packet opens the codec; the decoder reads them at open. One thread:
            # the stage runs one worker per core, and decoder threads cost ~10 % more CPU in total.
            self._codec_context.options = {"skip_loop_filter": "all"}
            self._codec_context.thread_count = 1
            self._small = _small_size(*super().frame_size, downscale)
            # one scaler for the whole pass: frame.reformat builds a new swscale context per call
            self._scaler = VideoReformatter()

        @property
        def frame_size(self) -> tuple[int, int]:
            return self._small

        def read(self, decode: bool = True):
            if not super().read(decode=False):
                return False
            if not decode:
                return True
            w, h = self._small
            return self._scaler.reformat(self._frame, w, h, format="bgr24",
                                         interpolation="FAST_BILINEAR").to_ndarray()

    return SmallFrames


def _open_small(path: str, downscale: int):
    # the class derives from PySceneDetect's, which is imported only when a stage runs (CLI start-up)
    return _small_frames_class()(path, downscale)


def apply_clip_policy(cuts: list[float], end: float, policy: ClipPolicy,
                      keep: list[tuple[float, float]] | None = None) -> list[tuple[float, float, int]]:
    """Scenes between cuts → `(start, end, scene_index)` spans that follow the clip policy.

    `keep` (a `youtube` source's `ranges` in the spec) restricts the spans to those time ranges; the
    skip-start rule still applies inside them.
    """
    bounds = [0.0, *cuts, end]
    windows = sorted((float(a), float(b)) for a, b in keep) if keep else [(0.0, end)]
    spans = []
    for i, (a0, b0) in enumerate(zip(bounds, bounds[1:])):
        for r0, r1 in windows:
            a, b = max(a0, r0, policy.skip_start_s), min(b0, r1)
            if b - a < policy.min_clip_s:
                continue
            parts = max(1, math.ceil((b - a) / policy.max_clip_s - 1e-9))
            step = (b - a) / parts
            spans.extend((a + k * step, a + (k + 1) * step if k < parts - 1 else b, i) for k in range(parts))
    return spans


def check_source(path: Path, label: str) -> float:
    """Reject sources no stage can use (no video, no audio, nothing to decode); return the video length."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceFailure("permanent", f"{label}: no video stream; avbench needs audio-video sources "
                                  "(drop it from the spec)")
            if not container.streams.audio:
                raise SourceFailure("permanent", f"{label}: no audio stream; re-download it with audio "
                                  "(yt-dlp format '+ba') or drop it")
            v = container.streams.video[0]
            duration = float(v.duration * v.time_base) if v.duration else (container.duration or 0) / 1e6
    except av.error.FFmpegError as e:
        raise SourceFailure("permanent", f"{label}: cannot be opened ({e.strerror or e}); "
                          "the file is damaged, re-download (or replace) it") from None
    return duration


@dataclass(frozen=True)
class _Job:
    source_id: str
    path: Path
    label: str
    out: Path
    detection: SceneDetection
    clip: ClipPolicy
    keep: tuple[tuple[float, float], ...] | None = None  # the source's time ranges, if the spec gives any


def _scene_cut_one(job: _Job) -> dict[str, Any]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import scenedetect

    label = job.label
    duration = check_source(job.path, label)
    if 0 < duration < job.clip.min_clip_s:
        raise SourceFailure("permanent", f"{label}: too short ({duration:.2f} s of video, one clip needs "
                          f"{job.clip.min_clip_s} s); drop it")
    cuts, end = detect_cuts(job.path, job.detection)
    spans = apply_clip_policy(cuts, end, job.clip, list(job.keep) if job.keep else None)
    params = json.dumps(detector_params(job.detection), sort_keys=True)
    version = scenedetect.__version__
    table = pd.DataFrame({
        "source_id": [job.source_id] * len(spans),
        "clip_index": list(range(len(spans))),
        "start": [float(a) for a, _, _ in spans],
        "end": [float(b) for _, b, _ in spans],
        "scene_index": [int(i) for _, _, i in spans],
        "detector": [job.detection.detector] * len(spans),
        "detector_params": [params] * len(spans),
        "scenedetect_version": [version] * len(spans),
    }, columns=COLUMNS).astype({"clip_index": "int64", "scene_index": "int64", "start": "float64", "end": "float64"})
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {b"avbench": json.dumps({"detector": job.detection.detector, "detector_params": json.loads(params),
                                    "scenedetect_version": version, "cuts": cuts, "video_end": end,
                                    "clip_policy": {"skip_start_s": job.clip.skip_start_s,
                                                    "max_clip_s": job.clip.max_clip_s,
                                                    "min_clip_s": job.clip.min_clip_s},
                                    "ranges": [list(r) for r in job.keep] if job.keep else None},
                                   sort_keys=True).encode()}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **meta})
    with atomic_path(job.out) as tmp:
        pq.write_table(arrow, tmp)
    return {"cuts": len(cuts), "spans": len(spans), "seconds": sum(b - a for a, b, _ in spans)}


def read_scenes(root: Path, source_id: str):
    """The clip table of one source (pandas DataFrame)."""
    import pandas as pd

    return pd.read_parquet(scenes_path(root, source_id))


def read_scenes_meta(root: Path, source_id: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(scenes_path(root, source_id)).metadata[b"avbench"])


def _tmp_leftovers(out: Path) -> list[Path]:
    """atomic_path's temp copies of `out` that a kill can leave (`.tmp-<name>.<random><suffix>`)."""
    return sorted(out.parent.glob(f".tmp-{out.name}.*")) if out.parent.is_dir() else []


@dataclass(frozen=True)
class SceneCutStage:
    """The scene-cut stage (Stage protocol): one job per ready source, done when its parquet exists."""

    detection: SceneDetection
    clip: ClipPolicy
    name: str = "scene-cut"
    parallelism: str = "processes"

    def jobs(self, root: Path, partition: Partition) -> list[Job]:
        root = Path(root)
        out = []
        for rec in ready_sources(root, partition):
            sid = rec["source_id"]
            path = scenes_path(root, sid)
            keep = tuple((float(a), float(b)) for a, b in rec["ranges"]) if rec.get("ranges") else None
            arg = _Job(sid, root / rec["path"], source_label(rec), path, self.detection, self.clip, keep)
            out.append(Job(sid, path.exists(), arg))
        return out

    def run(self, job: Job) -> dict[str, Any]:
        return _scene_cut_one(job.arg)

    def cleanup(self, root: Path, job: Job) -> None:
        for tmp in _tmp_leftovers(job.arg.out):
            tmp.unlink(missing_ok=True)


def scene_cut_stage(spec: DatasetSpec, cfg: SceneCutConfig = SceneCutConfig()) -> SceneCutStage:
    return SceneCutStage(effective_detection(spec.scenes, cfg), spec.clip)


def scene_cut_sources(spec: DatasetSpec, root: str | Path, cfg: SceneCutConfig = SceneCutConfig(),
                      progress: Any = None) -> StageSummary:
    """Run scene detection + the clip policy for every ready source of this partition (resumable)."""
    return run_stage(scene_cut_stage(spec, cfg), Path(root), cfg.partition, workers=cfg.workers,
                     progress=cfg.progress if progress is None else progress)
