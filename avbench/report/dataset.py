"""`avbench report ROOT` for a dataset root: what was built, what was thrown away, and a look at the clips.

Read only from the root's own records (records/, scenes/, clips/, failures/, shards/index.json and
stats.json), never from the spec file, so a copied root reports the same. The chosen clips' first frames,
waveforms and media files are copied into the report folder, which therefore opens from disk on its own
(moved or not). Same root → same bytes: everything is sorted, the clip grid is drawn with a fixed seed, and
no path of the root itself is written into the page.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from avbench.curate.records import all_records
from avbench.curate.scenes import read_scenes_meta
from avbench.curate.shard import filter_reasons, read_clip_table
from avbench.curate.split import SPLITS
from avbench.errors import DataError
from avbench.report import plots
from avbench.report.page import Page, esc

GRID_SEED = 0  # the kept-clip grid is a seeded draw: same root, same clips
GRID_CLIPS = 8
REJECTED_EXAMPLES = 6


def is_dataset_root(path: Path) -> bool:
    return path.is_dir() and ((path / "shards" / "index.json").is_file() or (path / "records").is_dir())


def dataset_report(root: Path, out: Path | None = None) -> Path:
    """Write the report of dataset `root` into `out` (default ROOT/report/); returns its index.html."""
    root = Path(root)
    if not is_dataset_root(root):
        raise DataError(f"{root}: not a dataset root (no shards/index.json and no records/); "
                        "pass the folder `avbench build` wrote")
    out = Path(out) if out is not None else root / "report"
    # Clip pictures of an earlier report must not linger beside the new page; only the report's own
    # media/ folder is cleared (never OUT itself: --out may name a folder holding other things).
    shutil.rmtree(out / "media", ignore_errors=True)
    (out / "media").mkdir(parents=True)
    index = _read_json(root / "shards" / "index.json") or {}
    stats = _read_json(root / "shards" / "stats.json") or {}
    spec = index.get("spec") or stats.get("spec") or {}
    clips = _clip_rows(root)

    page = Page(f"Dataset report: {spec.get('name', root.name)}")
    page.paragraph(f"Spec hash {spec.get('hash', 'unknown')}; {len(clips)} clips from "
                   f"{len({c['source_id'] for c in clips})} sources with clips.")
    _splits_section(page, out, index, stats)
    _sources_section(page, root)
    _lengths_section(page, out, clips)
    _filters_section(page, out, clips)
    _grid_section(page, out, clips)
    _scenes_section(page, out, root)
    _failures_section(page, root)
    return page.write(out)


# ---- reading ------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); rebuild the dataset (`avbench build`)") from None


def _clip_rows(root: Path) -> list[dict]:
    """Every clip of clips/*/clips.json with its source id and folder, sorted by key."""
    rows = []
    base = root / "clips"
    for table in sorted(base.glob("*/clips.json")) if base.is_dir() else []:
        head, clips = read_clip_table(table.parent)
        for clip in clips:
            rows.append({**clip, "source_id": head.get("source_id", table.parent.name), "dir": table.parent})
    return sorted(rows, key=lambda c: c["key"])


def _largest_mp4(clip: dict) -> Path | None:
    videos = clip.get("video") or {}
    if not videos:
        return None
    size = max(videos, key=int)
    return clip["dir"] / videos[size]


def _first_frame(mp4: Path) -> np.ndarray | None:
    import av

    try:
        with av.open(str(mp4)) as c:
            for frame in c.decode(video=0):
                return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError):
        return None
    return None


def _save_frame(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(arr)
    scale = max(1, 128 // max(img.width, 1))  # small clips (64 px) shown at least 128 px wide, pixels kept
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    img.save(path, format="PNG")  # PIL writes no time chunk: same pixels, same bytes


# ---- sections -----------------------------------------------------------------------------------------


def _splits_section(page: Page, out: Path, index: dict, stats: dict) -> None:
    page.heading("Sources and hours per split")
    splits = stats.get("splits") or {}
    if not splits:
        page.paragraph("No shards/stats.json: the shard stage has not run.")
        return
    samples: Counter[tuple[str, int]] = Counter()
    for row in index.get("shards", []):
        samples[(row["split"], row["size"])] += row["samples"]
    sizes = sorted({size for _, size in samples})
    header = ["split", "sources", "hours in", "hours kept", "clips kept", "clips filtered"]
    header += [f"samples {s} px" for s in sizes]
    rows = []
    for sp in SPLITS:
        st = splits.get(sp) or {}
        rows.append([sp, str(st.get("sources", 0)), f"{st.get('hours_in', 0.0):.4f}", f"{st.get('hours_out', 0.0):.4f}",
                     str(st.get("clips_kept", 0)), str(st.get("clips_filtered", 0))]
                    + [str(samples[(sp, s)]) for s in sizes])
    page.table(header, rows)
    plots.bar_chart(out / "hours_per_split.png", list(SPLITS),
                    [float((splits.get(sp) or {}).get("hours_out", 0.0)) for sp in SPLITS],
                    title="Hours of kept clips per split", ylabel="hours")
    page.image("hours_per_split.png", "bar chart of kept hours per split")
    if index.get("split_salt") is not None:
        page.paragraph(f"Splits are drawn by a salted hash of the source id (salt {index['split_salt']!r}).")


def _sources_section(page: Page, root: Path) -> None:
    page.heading("Sources")
    recs = sorted(all_records(root), key=lambda r: r["source_id"])
    rows = [[r["source_id"], str(r.get("kind", "")), str(r.get("title") or ""), str(r.get("license") or ""),
             str(r.get("channel") or ""), f"{float(r.get('duration_s') or 0.0):.1f}", str(r.get("status", ""))]
            for r in recs]
    page.table(["source", "kind", "title", "licence", "channel", "duration s", "status"], rows)


def _lengths_section(page: Page, out: Path, clips: list[dict]) -> None:
    page.heading("Clip lengths")
    kept = [c["frames"] / c["fps"] for c in clips if not filter_reasons(c) and c.get("fps")]
    plots.histogram(out / "clip_lengths.png", kept, bins=20, title="Kept clips", xlabel="length (s)")
    page.image("clip_lengths.png", "histogram of kept clip lengths",
               f"{len(kept)} kept clips, {sum(kept):.1f} s in all")


def _filters_section(page: Page, out: Path, clips: list[dict]) -> None:
    page.heading("Filter outcomes")
    flagged: Counter[str] = Counter()
    thresholds: dict[str, str] = {}
    for c in clips:
        for name, res in sorted((c.get("filters") or {}).items()):
            flagged[name] += bool(res.get("flagged"))
            thresholds.setdefault(name, ", ".join(f"{k} {v}" for k, v in sorted(res.items())
                                                  if k.startswith(("threshold", "max_"))))
    rejected = [c for c in clips if filter_reasons(c)]
    page.table(["filter", "thresholds", "clips flagged"],
               [[n, thresholds[n], str(flagged[n])] for n in sorted(thresholds)])
    page.paragraph(f"{len(rejected)} of {len(clips)} clips rejected; examples (first frame):")
    figs = []
    for c in rejected[:REJECTED_EXAMPLES]:
        mp4 = _largest_mp4(c)
        arr = _first_frame(mp4) if mp4 is not None and mp4.exists() else None
        if arr is None:
            continue
        name = f"media/rejected-{c['key']}.png"
        _save_frame(arr, out / name)
        reasons = ", ".join(filter_reasons(c))
        figs.append(f'<figure><img src="{esc(name)}" alt="first frame of rejected clip {esc(c["key"])}">'
                    f"<figcaption>{esc(c['key'])}: {esc(reasons)}</figcaption></figure>")
    page.raw('<div class="grid">' + "".join(figs) + "</div>")


def _grid_section(page: Page, out: Path, clips: list[dict]) -> None:
    import soundfile as sf

    page.heading("Random kept clips")
    kept = [c for c in clips if not filter_reasons(c)]
    chosen = sorted(random.Random(GRID_SEED).sample(kept, min(GRID_CLIPS, len(kept))), key=lambda c: c["key"])
    page.paragraph(f"{len(chosen)} of {len(kept)} kept clips, drawn with seed {GRID_SEED}.")
    cells = []
    for c in chosen:
        mp4, flac = _largest_mp4(c), c["dir"] / str(c.get("audio") or f"{c['key']}.flac")
        if mp4 is None or not mp4.exists() or not flac.exists():
            continue
        key = c["key"]
        shutil.copyfile(mp4, out / "media" / mp4.name)
        shutil.copyfile(flac, out / "media" / flac.name)
        parts = []
        arr = _first_frame(mp4)
        if arr is not None:
            _save_frame(arr, out / "media" / f"{key}.frame.png")
            parts.append(f'<img src="media/{esc(key)}.frame.png" alt="first frame of {esc(key)}">')
        audio, rate = sf.read(str(flac), dtype="float32", always_2d=False)
        plots.waveform_strip(out / "media" / f"{key}.wave.png", audio, rate)
        parts.append(f'<img src="media/{esc(key)}.wave.png" alt="waveform of {esc(key)}">')
        parts.append(f'<video controls preload="metadata" muted><source src="media/{esc(mp4.name)}" '
                     'type="video/mp4"></video>')
        parts.append(f'<audio controls preload="metadata"><source src="media/{esc(flac.name)}" '
                     'type="audio/flac"></audio>')
        caption = f"{key} ({c['source_id']}, {c['frames']} frames)"
        cells.append(f"<figure>{''.join(parts)}<figcaption>{esc(caption)}</figcaption></figure>")
    page.raw('<div class="grid">' + "".join(cells) + "</div>")


def _scenes_section(page: Page, out: Path, root: Path) -> None:
    page.heading("Scene cuts")
    rows, lengths = [], []
    for path in sorted((root / "scenes").glob("[!.]*.parquet")) if (root / "scenes").is_dir() else []:
        try:
            meta = read_scenes_meta(root, path.stem)
        except (OSError, KeyError, TypeError, ValueError):
            rows.append([path.stem, "unreadable", "", "", ""])
            continue
        cuts, end = list(meta.get("cuts") or []), float(meta.get("video_end") or 0.0)
        bounds = [0.0, *cuts, end]
        lengths += [b - a for a, b in itertools.pairwise(bounds) if b > a]
        params = meta.get("detector_params") or {}
        rows.append([path.stem, str(len(cuts)), f"{end:.1f}", str(meta.get("detector", "")),
                     str(params.get("threshold", ""))])
    page.table(["source", "cuts", "video s", "detector", "threshold"], rows)
    if lengths:
        page.paragraph(f"{len(lengths)} scenes; mean {np.mean(lengths):.2f} s, median {np.median(lengths):.2f} s.")
        plots.histogram(out / "scene_lengths.png", lengths, bins=20, title="Scene lengths (between cuts)",
                        xlabel="length (s)")
        page.image("scene_lengths.png", "histogram of scene lengths")


def _failures_section(page: Page, root: Path) -> None:
    page.heading("Failures by class")
    rows = []
    by_class: Counter[tuple[str, str]] = Counter()
    fdir = root / "failures"
    for path in sorted(fdir.glob("*/[!.]*.json")) if fdir.is_dir() else []:
        rec = _read_json(path) or {}
        cls = str(rec.get("error_class") or "unknown")
        by_class[(path.parent.name, cls)] += 1
        rows.append([path.parent.name, path.stem, cls, str(rec.get("error") or "")])
    if not rows:
        page.paragraph("No failures recorded (failures/ is empty).")
        return
    page.table(["stage", "class", "sources"], [[s, c, str(n)] for (s, c), n in sorted(by_class.items())])
    page.table(["stage", "source", "class", "error"], rows)
