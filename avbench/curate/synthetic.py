"""Procedural audio-video sources with a known ground truth, deterministic from a seed.

Each source looks like a typical download (640×360 H.264 at 30 fps, 44.1 kHz stereo AAC) and carries a
learnable audio-visual correspondence: a coloured square flashes for 0.2 s exactly when a decaying tone
starts, and the colour decides the pitch (six classes), the horizontal position decides the stereo pan.
A ball bounces through every normal scene so the video is never static by accident.

The timeline (t = 0 is the first video frame) is a sequence of scenes with hard cuts (a new background
colour). At 10 s (earlier when the source is shorter than 20 s) three scenes follow in order: a *silent*
scene (digital silence), a normal scene, and a *frozen* scene (one picture held, the hum goes on). Everything
the later stages must recover is returned by `render_synthetic` as the ground truth.

Exactness choices:
- cut and event times are snapped to video frame times, so a flash and its tone start together and a
  cut is the timestamp of the first frame of the new scene (with `vfr=True` the frame times are
  irregular, so are the snapped times);
- the tone starts at sample `round(t * sample_rate)`; `time_s` in the truth is that sample's time;
- MP4/MOV files use `movie_timescale = sample_rate`: with the default 1 ms movie timescale the edit list
  that places a late-starting audio stream is rounded and the audio lands up to 1 ms early.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avbench.curate.spec import SyntheticSource
from avbench.media import H264, add_aac_stream, add_h264_stream, yuv420_frame

# Six classes: colour (RGB) ↔ pitch (Hz). Hues far apart so a 64 px frame still tells them apart.
CLASSES: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((255, 40, 40), 330.0),
    ((255, 200, 0), 440.0),
    ((40, 220, 60), 587.3),
    ((0, 200, 255), 784.0),
    ((60, 80, 255), 1046.5),
    ((240, 60, 255), 1396.9),
)
FLASH_S = 0.2  # longer than one 10 fps output frame, so every flash is seen after resampling
TONE_S = 0.15
TONE_AMP = 0.6
HUM_AMP = 0.02  # about -37 dBFS RMS: well above the silence threshold, well below the tones
VIDEO_TICKS = 90000  # video time base 1/90000 (the MPEG convention) so irregular pts are representable


@dataclass(frozen=True)
class SyntheticPlan:
    source_id: str
    seed: int
    duration_s: float


def derive_seed(base_seed: int, index: int) -> int:
    """A per-source seed: independent streams for (base, index) pairs, stable across numpy versions."""
    digest = hashlib.sha256(f"avbench-synthetic/{base_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def plan_synthetic(src: SyntheticSource) -> list[SyntheticPlan]:
    """The sources a `kind = "synthetic"` spec entry stands for: ids, seeds and durations (0.1 s steps)."""
    plans = []
    for i in range(src.count):
        seed = derive_seed(src.seed, i)
        rng = np.random.default_rng(seed)
        duration = round(float(rng.uniform(src.min_duration_s, src.max_duration_s)), 1)
        plans.append(SyntheticPlan(source_id=f"synth-{src.seed}-{i}", seed=seed, duration_s=duration))
    return plans


# ---- the timeline --------------------------------------------------------------------------------------


def _frame_times(rng: np.random.Generator, duration_s: float, fps: int, vfr: bool) -> np.ndarray:
    """Frame timestamps in ticks of 1/VIDEO_TICKS; irregular (0.5–1.5 nominal intervals) when `vfr`."""
    if not vfr:
        n = math.ceil(duration_s * fps - 1e-9)
        return np.array([round(j * VIDEO_TICKS / fps) for j in range(n)], dtype=np.int64)
    # Whole milliseconds, so containers with a 1/1000 time base (Matroska) store them exactly.
    ms = VIDEO_TICKS // 1000
    lo, hi = 0.5 * 1000 / fps, 1.5 * 1000 / fps
    end = duration_s * VIDEO_TICKS
    steps = np.rint(rng.uniform(lo, hi, size=int(duration_s * fps * 2) + 2)).astype(np.int64) * ms
    ticks = np.concatenate([[0], np.cumsum(steps)])
    return ticks[ticks < end]


def _snap(ticks: np.ndarray, t_s: float) -> int:
    """Index of the first frame at or after `t_s`."""
    return int(np.searchsorted(ticks, t_s * VIDEO_TICKS - 1e-6, side="left"))


def _layout(rng: np.random.Generator, ticks: np.ndarray, duration_s: float) -> list[dict[str, Any]]:
    """Scenes as dicts with first-frame index `f0`, end index `f1` (exclusive) and `kind`."""
    # The special scenes start at 10 s (the default clip policy's skip) when the source is long enough
    # to hold them after it, earlier in short sources; at most 2.5 + 4.5 + 2.5 = 9.5 s long in total.
    specials_from = max(1.0, min(10.0, duration_s - 10.0))
    raw: list[tuple[float, str]] = []
    t = 0.0
    while t < specials_from:
        raw.append((t, "normal"))
        t += rng.uniform(3.0, 7.0)
        if specials_from - 1.5 < t < specials_from:
            t = specials_from  # no scene under 1.5 s right before the specials
    t = specials_from
    for kind, lo, hi in (("silent", 2.0, 2.5), ("normal", 3.0, 4.5), ("frozen", 2.0, 2.5)):
        raw.append((t, kind))
        t += rng.uniform(lo, hi)
    while t < duration_s:
        raw.append((t, "normal"))
        t += rng.uniform(3.0, 7.0)
    scenes = []
    for start, kind in raw:
        f0 = _snap(ticks, start)
        if f0 >= len(ticks) or (scenes and f0 <= scenes[-1]["f0"]):
            continue
        scenes.append({"f0": f0, "kind": kind})
    for a, b in zip(scenes, scenes[1:]):
        a["f1"] = b["f0"]
    scenes[-1]["f1"] = len(ticks)
    # A last scene under 1 s would be shorter than the detector's minimum scene length: merge it.
    if len(scenes) > 1 and (ticks[-1] - ticks[scenes[-1]["f0"]]) / VIDEO_TICKS < 1.0:
        last = scenes.pop()
        scenes[-1]["f1"] = last["f1"]
    return scenes


def _events(rng, ticks, scenes, width, height, size) -> list[dict[str, Any]]:
    """Flash/tone events inside normal scenes, at least 0.4 s apart, clear of the scene edges."""
    events = []
    for sc in scenes:
        if sc["kind"] != "normal":
            continue
        start = ticks[sc["f0"]] / VIDEO_TICKS
        end = (ticks[sc["f1"]] / VIDEO_TICKS) if sc["f1"] < len(ticks) else ticks[-1] / VIDEO_TICKS
        t = start + rng.uniform(0.3, 0.8)
        while t < end - 0.45:
            j = _snap(ticks, t)
            cls = int(rng.integers(len(CLASSES)))
            x = int(rng.integers(8, width - size - 8))
            y = int(rng.integers(8, height - size - 8))
            events.append({"frame": j, "class": cls, "x": x, "y": y})
            t = ticks[j] / VIDEO_TICKS + rng.uniform(0.4, 1.0)
    return events


# ---- pictures --------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, width: int, height: int, prev: tuple[float, bool] | None):
    """A two-tone vertical gradient far from the previous scene's: hue ≥ 100° away and the brightness
    flips between dark and bright, so every cut is a large jump in PySceneDetect's HSV score."""
    hue = float(rng.uniform(0, 360)) if prev is None else (prev[0] + rng.uniform(100, 260)) % 360
    bright = bool(rng.integers(2)) if prev is None else not prev[1]
    value = rng.uniform(0.75, 0.95) if bright else rng.uniform(0.25, 0.4)
    top = _hsv_to_rgb(hue, 0.8, value)
    bottom = _hsv_to_rgb((hue + 30) % 360, 0.6, value * 0.8)
    w = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = (1 - w) * np.array(top, np.float32) + w * np.array(bottom, np.float32)
    return np.ascontiguousarray(np.broadcast_to(img, (height, width, 3)).round().astype(np.uint8)), (hue, bright)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    c = v * s
    x = c * (1 - abs((h / 60) % 2 - 1))
    m = v - c
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h // 60) % 6]
    return ((r + m) * 255, (g + m) * 255, (b + m) * 255)


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy) <= radius * radius


def _ball_xy(t: float, width: int, height: int, radius: int, phase: tuple[float, float]) -> tuple[int, int]:
    """Bouncing ball: a triangle wave per axis, so the position is a pure function of time."""
    def tri(u: float, span: int) -> int:
        u = u % 2.0
        return int(round((u if u < 1 else 2 - u) * span))

    return (radius + tri(phase[0] + t * 0.45, width - 2 * radius - 1),
            radius + tri(phase[1] + t * 0.7, height - 2 * radius - 1))


# ---- sound -------------------------------------------------------------------------------------------------


def _audio(truth_events, scenes_s, duration_s, sample_rate, channels, hum_hz) -> np.ndarray:
    """Float32 [channels, n] for the whole timeline (t = 0 at sample 0)."""
    n = int(round(duration_s * sample_rate))
    out = np.zeros((channels, n), np.float32)
    for (start, end, kind), f in zip(scenes_s, hum_hz):
        if kind == "silent":
            continue
        a, b = int(round(start * sample_rate)), min(n, int(round(end * sample_rate)))
        k = np.arange(a, b)
        out[:, a:b] += (HUM_AMP * np.sin(2 * np.pi * f * k / sample_rate)).astype(np.float32)
    m = int(round(TONE_S * sample_rate))
    k = np.arange(m)
    for ev in truth_events:
        a = int(round(ev["time_s"] * sample_rate))
        b = min(n, a + m)
        # Starts at its peak (cosine at phase 0) so the onset sample is unambiguous after resampling.
        tone = TONE_AMP * np.exp(-k / (0.03 * sample_rate)) * np.cos(2 * np.pi * ev["pitch_hz"] * k / sample_rate)
        gains = (ev["pan_left"], ev["pan_right"]) if channels == 2 else (1.0,) * channels
        for c in range(channels):
            out[c, a:b] += (gains[c] * tone[: b - a]).astype(np.float32)
    return out


def _audio_frame(av, chunk: np.ndarray, fmt: str, layout: str, sample_rate: int, pts: int):
    """An av.AudioFrame in the encoder's sample format from float32 [channels, n]."""
    if fmt == "fltp":
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
    elif fmt in ("s16", "s32"):
        scale, dtype = (32767, np.int16) if fmt == "s16" else (2**31 - 1, np.int32)
        ints = np.clip(np.rint(chunk * scale), -scale, scale).astype(dtype)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(ints.T).reshape(1, -1), format=fmt, layout=layout)
    else:  # pragma: no cover - a codec we never configure
        raise ValueError(f"unsupported encoder sample format {fmt!r}")
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate)
    return frame


_AUDIO_SAMPLE_FORMAT = {"aac": "fltp", "pcm_s16le": "s16", "flac": "s16"}


def render_synthetic(
    path: str | Path,
    seed: int,
    duration_s: float,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    sample_rate: int = 44100,
    channels: int = 2,
    audio_codec: str = "aac",
    with_audio: bool = True,
    with_video: bool = True,
    vfr: bool = False,
    audio_offset_s: float = 0.0,
) -> dict[str, Any]:
    """Write one synthetic source to `path` (container from the suffix: .mp4, .mov, .mkv) and return
    its ground truth (times in seconds on the video timeline; see the module docstring).

    The bytes depend only on the arguments and the library versions (`avbench.media`'s fixed encoder settings).
    `audio_offset_s > 0` starts the audio stream that much later than the video (tones before it are
    not in the file: their `audible` is false). Use `audio_codec="pcm_s16le"` (in .mov/.mkv) or "flac"
    for lossless audio.
    """
    import av

    if audio_codec not in _AUDIO_SAMPLE_FORMAT:
        raise ValueError(f"audio_codec {audio_codec!r}: choose one of {', '.join(_AUDIO_SAMPLE_FORMAT)}")
    if duration_s <= 0 or not (with_audio or with_video):
        raise ValueError("render_synthetic needs duration_s > 0 and at least one of audio or video")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    ticks = _frame_times(rng, duration_s, fps, vfr)
    times = ticks / VIDEO_TICKS
    scenes = _layout(rng, ticks, duration_s)
    size = max(8, height // 5)  # the flashing square
    radius = max(3, height // 20)  # the ball
    raw_events = _events(rng, ticks, scenes, width, height, size)

    backgrounds, hums, prev_hue = [], [], None
    for sc in scenes:
        bg, prev_hue = _background(rng, width, height, prev_hue)
        backgrounds.append(bg)
        hums.append(float(rng.uniform(90, 180)))
    phase = (float(rng.uniform(0, 2)), float(rng.uniform(0, 2)))

    def scene_end_s(sc) -> float:
        return float(times[sc["f1"]]) if sc["f1"] < len(times) else float(duration_s)

    scenes_s = [(float(times[sc["f0"]]), scene_end_s(sc), sc["kind"]) for sc in scenes]
    events = []
    for ev in raw_events:
        frame_t = float(times[ev["frame"]])
        color, pitch = CLASSES[ev["class"]]
        theta = (ev["x"] + size / 2) / width * (math.pi / 2)
        events.append({
            "time_s": round(frame_t * sample_rate) / sample_rate,
            "frame_time_s": frame_t,
            "flash_end_s": frame_t + FLASH_S,
            "class": ev["class"],
            "color": list(color),
            "pitch_hz": pitch,
            "x": ev["x"], "y": ev["y"], "size": size,
            "pan_left": math.cos(theta), "pan_right": math.sin(theta),
            "audible": with_audio and frame_t >= audio_offset_s,
        })
    truth = {
        "seed": seed, "duration_s": duration_s, "width": width, "height": height, "fps": fps,
        "vfr": vfr, "sample_rate": sample_rate, "channels": channels, "audio_codec": audio_codec,
        "audio_offset_s": audio_offset_s, "with_audio": with_audio, "with_video": with_video,
        "frame_times_s": [float(t) for t in times],
        "scene_cuts_s": [s for s, _, _ in scenes_s[1:]],
        "scenes": [{"start_s": s, "end_s": e, "kind": k} for s, e, k in scenes_s],
        "silent_spans": [[s, e] for s, e, k in scenes_s if k == "silent"],
        "frozen_spans": [[s, e] for s, e, k in scenes_s if k == "frozen"],
        "events": events,
        "classes": [{"class": i, "color": list(c), "pitch_hz": p} for i, (c, p) in enumerate(CLASSES)],
    }

    options = {"movie_timescale": str(sample_rate)} if path.suffix.lower() in (".mp4", ".mov", ".m4a") else {}
    container = av.open(str(path), "w", options=options)
    try:
        vstream = astream = None
        if with_video:
            vstream = add_h264_stream(container, width, height, H264(crf=23, preset="veryfast"), rate=fps,
                                      time_base=Fraction(1, VIDEO_TICKS))
        audio = None
        if with_audio:
            layout = "stereo" if channels == 2 else "mono"
            if audio_codec == "aac":
                astream = add_aac_stream(container, sample_rate, layout)
            else:
                astream = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
                astream.codec_context.thread_count = 1
                astream.time_base = Fraction(1, sample_rate)
            audio = _audio(events, scenes_s, duration_s, sample_rate, channels, hums)
            a_first = int(round(audio_offset_s * sample_rate))
            a_next = a_first
            chunk = 1024

        def push_audio(until_s: float) -> None:
            nonlocal a_next
            end = min(audio.shape[1], int(round(until_s * sample_rate)))
            while a_next < end:
                b = min(end, a_next + chunk)
                frame = _audio_frame(av, audio[:, a_next:b], _AUDIO_SAMPLE_FORMAT[audio_codec], layout,
                                     sample_rate, a_next)
                container.mux(astream.encode(frame))
                a_next = b

        if with_video:
            disc = _disc(radius)
            scene_of = np.zeros(len(ticks), np.int64)
            for i, sc in enumerate(scenes):
                scene_of[sc["f0"] : sc["f1"]] = i
            flash_at: dict[int, list[dict]] = {}
            for ev in events:
                j = int(np.searchsorted(ticks, round(ev["frame_time_s"] * VIDEO_TICKS)))
                while j < len(ticks) and times[j] < ev["flash_end_s"] - 1e-9:
                    flash_at.setdefault(j, []).append(ev)
                    j += 1
            held = None
            for j, tick in enumerate(ticks):
                sc = scenes[scene_of[j]]
                if sc["kind"] == "frozen" and held is not None and j > sc["f0"]:
                    img = held
                else:
                    img = backgrounds[scene_of[j]].copy()
                    cx, cy = _ball_xy(float(times[j]), width, height, radius, phase)
                    patch = img[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
                    patch[disc] = (245, 245, 235)
                    for ev in flash_at.get(j, ()):
                        img[ev["y"] : ev["y"] + size, ev["x"] : ev["x"] + size] = ev["color"]
                    held = img
                frame = yuv420_frame(img)
                frame.pts = int(tick)
                frame.time_base = Fraction(1, VIDEO_TICKS)
                container.mux(vstream.encode(frame))
                if with_audio:
                    push_audio(float(times[j]) + 0.5)  # keep the streams interleaved in the file
            container.mux(vstream.encode(None))
        if with_audio:
            push_audio(duration_s)
            container.mux(astream.encode(None))
    finally:
        container.close()
    return truth
