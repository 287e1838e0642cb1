"""Test helper: put synthetic sources into a dataset root the way the download stage does."""

from __future__ import annotations

import shutil
from pathlib import Path

from avbench.curate.records import SourceRecord
from avbench.curate.synthetic import render_synthetic
from avbench.io import sha256_file


def add_record(root: Path, source_id: str, media: Path, duration_s: float) -> str:
    """Move `media` to sources/<sha256>.<ext> and write an ok record for it; returns the relative path."""
    root = Path(root)
    sha = sha256_file(media)
    rel = f"sources/{sha}{media.suffix}"
    (root / "sources").mkdir(parents=True, exist_ok=True)
    shutil.move(media, root / rel)
    SourceRecord(source_id=source_id, kind="synthetic", url=f"synthetic:{source_id}", status="ok", attempts=1,
                 sha256=sha, path=rel, duration_s=duration_s, license="CC0-1.0", title=source_id).write(root)
    return rel


def add_synthetic(root: Path, source_id: str, seed: int, duration_s: float, ext: str = "mp4", **kw) -> dict:
    """Render a synthetic source (small by default: 320×180) into `root`; returns its ground truth."""
    kw.setdefault("width", 320)
    kw.setdefault("height", 180)
    tmp = Path(root) / f"render-{source_id}.{ext}"
    Path(root).mkdir(parents=True, exist_ok=True)
    truth = render_synthetic(tmp, seed, duration_s, **kw)
    truth["path"] = add_record(root, source_id, tmp, duration_s)
    return truth
