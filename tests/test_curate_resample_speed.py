"""The fast picture path of resample and scene-cut: scaled in the decoder's pixel format, only the frames
shown converted, decoder threads without effect on the bytes, small pictures for scene detection."""

from __future__ import annotations

import hashlib
import json

import av
import cv2
import numpy as np
import pytest
from support.avsources import scene_picture, tone, write_source

from avbench.curate import pictures, scenes
from avbench.curate.pictures import Shrinker, square_geometry
from avbench.curate.resample import CLIP_FORMAT, resample_file
from avbench.curate.spec import Filters, OutputFormat, SceneDetection
from avbench.media import yuv420_frame


def _smooth(h: int, w: int) -> np.ndarray:
    """A picture without edges finer than a pixel of the output, so two area scalers agree closely."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 40 + y / 55)], axis=-1)
    img[: h // 3, : w // 4] = (230, 20, 20)  # a block that marks where the top-left corner went
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference(rgb: np.ndarray, size: int, mode: str, rotation: int) -> np.ndarray:
    """Clip format 1's recipe: full-size RGB, turned upright, OpenCV INTER_AREA (crop or letterbox)."""
    img = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb
    h, w = img.shape[:2]
    if mode == "center-crop":
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return cv2.resize(img[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


@pytest.mark.parametrize("mode", ["center-crop", "letterbox"])
@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_the_decoder_side_scaler_shows_what_the_opencv_recipe_showed(mode, rotation):
    rgb = _smooth(360, 640)
    frame = yuv420_frame(rgb)  # the decoder's pixel format
    decoded_rgb = frame.to_ndarray(format="rgb24")  # what format 1 started from
    for size in (32, 64):
        got = Shrinker(size, mode)(frame, rotation)
        want = _reference(decoded_rgb, size, mode, rotation)
        assert got.shape == want.shape == (size, size, 3) and got.dtype == np.uint8
        diff = np.abs(got.astype(int) - want.astype(int))
        # same geometry (crop, bars, orientation), a different area filter: within a few levels
        assert diff.mean() < 3.0 and np.percentile(diff, 99) < 24, (size, diff.mean(), diff.max())


def test_letterbox_geometry_keeps_the_upright_aspect():
    assert square_geometry(640, 360, 64, "letterbox") == ((640, 360, 0, 0), (64, 36))
    # a picture shown turned keeps its stored aspect and is turned once small (see the rotation cases)
    assert square_geometry(90, 160, 64, "letterbox") == ((90, 160, 0, 0), (36, 64))
    assert square_geometry(640, 360, 64, "center-crop") == ((360, 360, 140, 0), (64, 64))


def test_a_stream_that_changes_size_gets_a_new_graph():
    shrink = Shrinker(32, "center-crop")
    a = shrink(yuv420_frame(_smooth(90, 160)), 0)
    b = shrink(yuv420_frame(_smooth(240, 320)), 0)
    assert a.shape == b.shape == (32, 32, 3)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_only_shown_frames_are_converted_and_decoder_threads_change_no_byte(tmp_path, monkeypatch):
    # 30 fps → 10 fps: sample-and-hold shows one source frame in three
    src = write_source(tmp_path / "s.mp4", 6.0, picture=scene_picture(320, 180, 3.0), sound=tone(), fps=30,
                       width=320, height=180)
    out = OutputFormat(sizes=(32, 64))
    spans = [(0.0, 2.5, 0), (3.0, 5.5, 1)]
    calls = []
    real_call = Shrinker.__call__

    def counting(self, frame, rotation):
        calls.append((self.size, frame.pts))
        return real_call(self, frame, rotation)

    monkeypatch.setattr(pictures.Shrinker, "__call__", counting)
    one = resample_file(src, "s", spans, tmp_path / "one", out, Filters(), decoder_threads=1)
    frames_out = sum(c["frames"] for c in one["clips"])
    assert frames_out == 50
    assert len(calls) == 2 * frames_out  # once per shown frame and size, never for the 2 in 3 not shown
    assert len({pts for _, pts in calls}) == frames_out
    monkeypatch.setattr(pictures.Shrinker, "__call__", real_call)
    resample_file(src, "s", spans, tmp_path / "threads", out, Filters(), decoder_threads=3)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "threads")


def test_clips_json_records_the_clip_format(demo_dataset):
    meta = json.loads(next((demo_dataset / "clips").glob("*/clips.json")).read_text())
    assert meta["clip_format"] == CLIP_FORMAT == 2
    assert meta["resample"]["resize_filter"] == pictures.SCALER


def test_scene_detection_gets_small_pictures_from_the_decoder(tmp_path):
    src = write_source(tmp_path / "wide.mp4", 1.0, picture=scene_picture(1280, 720), sound=tone(),
                       width=1280, height=720)
    video = scenes._open_small(str(src), 0)
    assert video.frame_size == (256, 144)
    img = video.read()
    assert img.shape == (144, 256, 3) and img.dtype == np.uint8
    # the flat colour of the first scene survives the shrink (BGR, within the codec's error)
    full = next(av.open(str(src)).decode(video=0)).to_ndarray(format="bgr24")
    assert np.abs(img[72, 20].astype(int) - full[360, 100].astype(int)).max() <= 6
    assert scenes._small_size(1280, 720, 4) == (320, 180)
    params = scenes.detector_params(SceneDetection())
    assert "loop filter skipped" in params["frames"]
