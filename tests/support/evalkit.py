"""Folders in the `avbench sample` layout with synthetic clips, for the metric tests."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

FPS, SR = 10, 16000


def write_av_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, sr: int = SR) -> None:
    """H.264 + AAC mp4 (one encoder thread, so the bytes are reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.thread_count = 1
        vs.options = {"crf": "18"}
        st = out.add_stream("aac", rate=sr)
        st.layout = "mono"
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        a = audio.astype(np.float32)[None]
        af = av.AudioFrame.from_ndarray(a, format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = sr, 0, Fraction(1, sr)
        for pkt in st.encode(af):
            out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def make_clip(seed: int, style: str, size: int = 32, frames: int = 16):
    """A moving blob over a background; `style` changes the distribution (colour, speed, tone)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    speed = 1.0 if style == "a" else 3.0
    colour = np.array([220, 60, 60]) if style == "a" else np.array([40, 200, 90])
    cx, cy = rng.uniform(6, size - 6, 2)
    out = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        x0 = (cx + speed * t) % size
        blob = np.exp(-((xx - x0) ** 2 + (yy - cy) ** 2) / 20.0)[..., None]
        bg = 40 + 30 * np.sin(yy / 5.0 + seed)[..., None]
        out[t] = np.clip(bg + blob * colour + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    n = frames * SR // FPS
    tone = 300.0 if style == "a" else 1200.0
    audio = 0.3 * np.sin(2 * np.pi * (tone + 20 * seed) * np.arange(n) / SR) + 0.02 * rng.normal(size=n)
    return out, audio.astype(np.float32)


def make_sample_folder(root: Path, n: int, style: str, seed0: int = 0) -> Path:
    """The `avbench sample` layout: video/<i>.mp4 (H.264+AAC), audio/<i>.wav (16 kHz), samples.json."""
    rows = []
    for i in range(n):
        frames, audio = make_clip(seed0 + i, style)
        write_av_mp4(root / "video" / f"{i}.mp4", frames, audio)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"{i}.wav", audio, SR)
        rows.append({"index": i, "prompt": f"clip {i}"})
    (root / "samples.json").write_text(json.dumps({"samples": rows}))
    return root


# A weight-free benchmark track on the demo test split (AV-Align only), for tests of tracks and reports.
TRACK_TOML = """name = "{name}"
description = "{description}"
spec = "demo"
split = "test"
size = 64
task = "unconditional"
protocol = "avbench"
metrics = ["av_align"]
clip_count = 3
seed = 0
"""


def track_toml(name: str, description: str = "a test track") -> str:
    return TRACK_TOML.format(name=name, description=description)


def eval_av_align(samples: Path, results: Path, name: str, *extra: str) -> dict:
    """Run `avbench eval --av-align` on a sample folder through the real CLI (the "eval accepts it" check of
    every generating command) and return the result record; a non-zero exit fails with the CLI's output."""
    from typer.testing import CliRunner

    from avbench.cli import app

    res = CliRunner().invoke(app, ["eval", "--samples", str(samples), "--av-align", "--results-dir", str(results),
                                   "--name", name, *extra])
    assert res.exit_code == 0, res.output
    return json.loads((Path(results) / f"{name}.json").read_text())

