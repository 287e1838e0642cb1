"""Test media for the fetch tests: small synthetic sources rendered with the real encoder, plus the
broken files real servers hand out (an empty 261-byte mp4 written by ffmpeg, an HTML page)."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avbench.curate.ffmpeg import find_ffmpeg
from avbench.curate.synthetic import render_synthetic

SMALL = dict(width=96, height=64, fps=10, sample_rate=16000, channels=1)


def render_bytes(tmp: Path, seed: int, duration_s: float = 3.0, **kw) -> bytes:
    path = tmp / f"m-{seed}-{duration_s}-{'-'.join(f'{k}{v}' for k, v in sorted(kw.items()))}.mp4"
    if not path.exists():
        render_synthetic(path, seed, duration_s, **{**SMALL, **kw})
    return path.read_bytes()


def empty_mp4(tmp: Path) -> bytes:
    """What ffmpeg leaves when it reads nothing: an mp4 header with no samples (261 bytes here)."""
    out = tmp / "empty.mp4"
    subprocess.run(
        [str(find_ffmpeg()), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=s=64x64:r=10",
         "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-c:v", "libx264", "-c:a", "aac", "-t", "0", str(out)],
        check=True,
    )
    return out.read_bytes()


HTML_PAGE = b"<!doctype html><html><head><title>Video not found</title></head><body><p>gone</p></body></html>"


def url_spec(path: Path, urls: list[str], *, min_clip_s: float = 1.0, skip_start_s: float = 0.0) -> Path:
    lines = [
        'name = "fetchtest"',
        'description = "loopback sources"',
        "target_hours = 0.01",
        "[[sources]]",
        'kind = "url"',
        "urls = [" + ", ".join(f'"{u}"' for u in urls) + "]",
        "[clip]",
        f"skip_start_s = {skip_start_s}",
        f"min_clip_s = {min_clip_s}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def mux_streams(path: Path, *, video_s: float, audio_s: float, start_s: float = 0.0) -> Path:
    """A small H.264 + AAC file written with PyAV packet by packet, interleaved by time: `video_s` of
    video and `audio_s` of audio (a 330 Hz tone), every timestamp shifted by `start_s` (a recording
    whose clock starts at 10 h has start_s = 36000). The container follows the suffix (.mp4, .mkv)."""
    fps, rate, n = 10, 16000, 1024
    events = sorted([(k / fps, 0, k) for k in range(int(video_s * fps))]
                    + [(k * n / rate, 1, k) for k in range(int(audio_s * rate / n))])
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=rate, layout="mono")
        for _, is_audio, k in events:
            if is_audio:
                t = (np.arange(n) + k * n) / rate
                frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None],
                                                   format="fltp", layout="mono")
                frame.sample_rate, frame.time_base = rate, Fraction(1, rate)
                frame.pts = round(start_s * rate) + k * n
                packets = a.encode(frame)
            else:
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (40 + 9 * k) % 256, np.uint8), format="rgb24")
                frame.time_base = Fraction(1, fps)
                frame.pts = round(start_s * fps) + k
                packets = v.encode(frame)
            for p in packets:
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    return path


def faststart(data: bytes, tmp: Path) -> bytes:
    """The same media with its index (moov) in front, as CDNs serve it: a cut-off copy still opens and
    announces its full duration."""
    src, dst = tmp / "in.mp4", tmp / "fast.mp4"
    src.write_bytes(data)
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst.read_bytes()
