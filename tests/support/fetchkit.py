"""Test media for the fetch tests: small synthetic sources rendered with the real encoder, plus the
broken files real servers hand out (an empty 261-byte mp4 written by ffmpeg, an HTML page)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from avbench.curate.synthetic import render_synthetic

SMALL = dict(width=96, height=64, fps=10, sample_rate=16000, channels=1)


def render_bytes(tmp: Path, seed: int, duration_s: float = 3.0, **kw) -> bytes:
    path = tmp / f"m-{seed}-{duration_s}-{'-'.join(f'{k}{v}' for k, v in sorted(kw.items()))}.mp4"
    if not path.exists():
        render_synthetic(path, seed, duration_s, **{**SMALL, **kw})
    return path.read_bytes()


def empty_mp4(tmp: Path) -> bytes:
    """What ffmpeg leaves when it reads nothing: an mp4 header with no samples (261 bytes here)."""
    from avbench.curate.ffmpeg import find_ffmpeg

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
