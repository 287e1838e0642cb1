"""Find an ffmpeg binary and make it visible to yt-dlp.

yt-dlp looks for a program literally named `ffmpeg` on PATH for merging and probing; its
`ffmpeg_location` option alone does not cover every code path. imageio-ffmpeg ships a binary with a
versioned file name (`ffmpeg-linux-x86_64-v9.0.2`), so we link it as `ffmpeg` in a cache directory and
put that directory first on PATH. A system ffmpeg, when present, wins.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import imageio_ffmpeg

from avbench.errors import ToolMissingError
from avbench.paths import cache_dir

FFmpegNotFound = ToolMissingError


def find_ffmpeg() -> Path:
    """The system ffmpeg if one is on PATH, else imageio-ffmpeg's bundled binary."""
    system = shutil.which("ffmpeg")
    if system:
        return Path(system)
    try:
        return Path(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as e:
        raise FFmpegNotFound(f"ffmpeg not found ({e}); install it on PATH or reinstall imageio-ffmpeg") from None


def ensure_ffmpeg_on_path() -> Path:
    """Make `ffmpeg` resolvable through PATH (idempotent); return the path PATH now resolves to."""
    system = shutil.which("ffmpeg")
    if system:
        return Path(system)
    exe = find_ffmpeg()
    bin_dir = cache_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "ffmpeg"
    if not (link.exists() and link.resolve() == exe.resolve()):
        # Build the link under a temporary name and rename it: concurrent processes may race here.
        tmp = bin_dir / f".ffmpeg-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(exe)
        os.replace(tmp, link)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return link
