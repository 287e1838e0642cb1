"""Test helpers for latent codecs and latent shards: tiny codec files on disk, an encoded copy of a root.

The tiny codecs are written in the real on-disk formats (diffusers folders, .pth state dicts) by
`avbench.models.latent.tiny.write_tiny_codec` and passed to avbench by path, as a user would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from avbench.models.latent.codec import CodecPaths


def tiny_codec_files(folder: Path, name: str = "tiny") -> CodecPaths:
    from avbench.models.latent.tiny import write_tiny_codec

    return write_tiny_codec(name, folder)


def codec_flags(paths: CodecPaths) -> list[str]:
    """The `avbench encode` options naming these files."""
    out = []
    for flag, value in (("--video-vae", paths.video_vae), ("--audio-vae", paths.audio_vae), ("--vocoder", paths.vocoder)):
        if value:
            out += [flag, value]
    return out


def copy_pixel_root(src: Path, dest: Path) -> Path:
    """A fresh dataset root holding only `src`'s pixel shards (all encode reads), so tests never write into
    the shared session fixture."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(src) / "shards", dest / "shards")
    return dest


def encoded_root(src: Path, dest: Path, paths: CodecPaths, *, vae: str = "tiny", size: int = 64, **kw) -> Path:
    """`dest` = a copy of `src`'s pixel shards, encoded with codec `vae` (files `paths`) at `size`."""
    from avbench.encode.stage import EncodeConfig, encode_root

    copy_pixel_root(src, dest)
    cfg = EncodeConfig(root=dest, vae=vae, size=size, video_vae=paths.video_vae, audio_vae=paths.audio_vae,
                       vocoder=paths.vocoder, threads=1, progress=False, **kw)
    summary = encode_root(cfg)
    assert summary.stage.failed == 0 and summary.index_path is not None, summary.lines()
    return dest
