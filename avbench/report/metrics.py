"""`avbench report metrics/` (a results folder) or `avbench report RECORD.json`: the evaluation page.

The leaderboard tables are the ones `avbench leaderboard` prints (rows from `leaderboard.record_row`, tracks
and "not comparable" rows from `leaderboard.flag_rows`): one table per track, then one per protocol for
records without a track, each score column named with its protocol and, where the eval ran with
`--bootstrap`, the 95% interval under the score. Beside the tables: what protocol each column was scored
under, a gallery per record (first frames of a few of its samples next to a few reference windows, read
through `metrics.sources` the way the eval read them) and the memorisation contact sheet when the eval
wrote one (`<name>.memorisation.png` next to the record).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from avbench.errors import AvbenchError, MetricsError
from avbench.metrics import leaderboard as lb
from avbench.metrics.sources import iter_clips, parse_source
from avbench.report.page import Page, esc

GALLERY_CLIPS = 4
# the protocol fields a reader needs to tell two columns apart; paths and hashes are in the record
_PROTOCOL_KEYS = ("frechet", "weights", "weights_check", "random_weights", "dtype", "fvd_profile", "model",
                  "n_generated", "n_reference", "n_generated_examples", "n_reference_examples", "n_scored",
                  "n_clips")


class MetricsReportError(AvbenchError):
    """The path holds no result record the report can read; the message names it and the fix."""


def _load(path: Path) -> tuple[list[dict], Path]:
    """(records in leaderboard order, the folder they live in)."""
    if path.is_file():
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise MetricsReportError(f"{path}: not valid JSON ({exc}); pass a record `avbench eval` wrote") from exc
        if not isinstance(rec, dict) or "scores" not in rec:
            raise MetricsReportError(f"{path}: no 'scores': not an `avbench eval` result record")
        return [rec], path.parent
    if not path.is_dir():
        raise MetricsReportError(f"{path}: not a results folder or a result record")
    try:
        records = [r for r in lb.load_records(path) if isinstance(r, dict) and "scores" in r]
    except MetricsError as exc:
        raise MetricsReportError(str(exc)) from exc
    if not records:
        raise MetricsReportError(f"{path}: no result records (*.json with 'scores'); run `avbench eval "
                                 f"--results-dir {path}` first")
    return records, path


def _ci(rec: dict, metric: str) -> str:
    ci = ((rec.get("protocols") or {}).get(metric) or {}).get("ci95")
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        return f" [{ci[0]:.4g}, {ci[1]:.4g}]"
    return ""


def _clips(rec: dict) -> str:
    """Clips scored (generated / reference): rows of one protocol may use different --num-clips."""
    counts = rec.get("counts") or {}
    gen, ref = counts.get("generated_clips"), counts.get("reference_clips")
    return "" if gen is None else f"{gen} / {ref}" if ref is not None else str(gen)


def _table(page: Page, pairs: list[tuple[dict[str, str], dict]], protocol: str, flagged: bool = False) -> None:
    rows = [r for r, _ in pairs]
    scores = lb.score_columns(rows)
    tail = ["clips", *lb.MARKDOWN_TAIL, *(["flag"] if flagged else [])]
    body = []
    for row, rec in pairs:
        others = json.loads(row["other_scores"] or "{}")
        cells = [row["name"]]
        for c in scores:
            value = row[c] if c in lb.SCORES else lb.format_value(others.get(c))
            cells.append(value + _ci(rec, c) if value else "")
        body.append(cells + [_clips(rec), *(row[c] for c in tail[1:])])
    page.table(["name", *(f"{c} ({protocol})" for c in scores), *tail], body)
    if any(_ci(rec, c) for _, rec in pairs for c in scores):
        page.paragraph("[lo, hi]: bootstrap 95% interval (avbench eval --bootstrap N).")
    _protocol_table(page, pairs, scores)


def _describe_protocol(section: dict) -> str:
    parts = []
    prof = section.get("profile")
    if isinstance(prof, dict) and prof.get("name"):
        parts.append(f"profile {prof['name']}")
    for key in _PROTOCOL_KEYS:
        if key in section and section[key] not in (None, "", {}, []):
            parts.append(f"{key} {lb.format_value(section[key])}")
    sha = str(section.get("weights_sha256") or "")
    if sha:
        parts.append(f"weights sha256 {sha[:12] if len(sha) == 64 else sha}")
    return ", ".join(parts)


def _protocol_table(page: Page, pairs: list[tuple[dict[str, str], dict]], scores: list[str]) -> None:
    """What each column was scored under, per distinct setting (rows of one table usually share one)."""
    lines = []
    for c in scores:
        seen: dict[str, list[str]] = {}
        for row, rec in pairs:
            section = (rec.get("protocols") or {}).get(c)
            if isinstance(section, dict):
                seen.setdefault(_describe_protocol(section), []).append(row["name"])
        for text, names in seen.items():
            lines.append([c, text or "(no details recorded)", ", ".join(names)])
    proto = (pairs[0][1].get("protocol") or {}) if pairs else {}
    head = f"Eval protocol {proto.get('name') or lb.DEFAULT_PROTOCOL}"
    if proto:
        # num_clips and seed are per row (the clips column); the rest is what the protocol fixes
        head += ": " + ", ".join(f"{k} {lb.format_value(v)}" for k, v in sorted(proto.items())
                                 if k not in ("name", "num_clips", "seed", "clip_count") and v is not None)
    page.paragraph(head)
    if lines:
        page.table(["column", "protocol of the column", "rows"], lines)


def _leaderboard(page: Page, records: list[dict]) -> None:
    rows = lb.flag_rows([lb.record_row(r) for r in records])
    page.heading("Leaderboard")
    for sec in lb.sections(rows):
        page.heading(sec.heading, 3)
        if sec.note:
            page.paragraph(sec.note)
        for table in sec.tables:
            if table.caption:
                page.paragraph(table.caption)
            _table(page, [(rows[i], records[i]) for i in table.rows], table.protocol, flagged=table.flagged)


def _source_spec(desc: dict | None) -> str | None:
    """The --samples/--reference string a recorded source came from."""
    if not isinstance(desc, dict) or not desc.get("path"):
        return None
    if desc.get("kind") == "dataset":
        return f"{desc['path']}:{desc.get('split')}:{desc.get('size')}"
    return str(desc["path"])


def _first_frames(spec: str, out: Path, stem: str, rel: str) -> tuple[list[tuple[str, str]], str | None]:
    """PNGs of the first frame of the first few clips of a source: ([(rel path, clip key)], why none)."""
    try:
        src = parse_source(spec)
    except MetricsError as exc:
        return [], f"not readable any more ({exc})"
    errors: list[str] = []
    got = []
    for i, clip in enumerate(iter_clips(src, 1, want_video=True, want_audio=False, limit=GALLERY_CLIPS,
                                        errors=errors)):
        name = f"{stem}-{i}.png"
        (out / rel).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(clip.frames[0])).save(out / rel / name, format="PNG")
        got.append((f"{rel}/{name}", clip.key))
    return got, (None if got else f"no readable clips ({errors[0] if errors else 'empty'})")


def _figures(images: list[tuple[str, str]], what: str) -> str:
    # 128 px wide: the clips are 32-64 px, too small to judge at their own size
    return "".join(f'<figure><img src="{esc(p)}" alt="{esc(what)} {esc(k)}" width="128"><figcaption>{esc(what)} '
                   f"{esc(k)}</figcaption></figure>" for p, k in images)


def _gallery(page: Page, records: list[dict], folder: Path, out: Path) -> None:
    page.heading("Samples beside reference clips")
    decoded: dict[str, tuple[list, str | None]] = {}  # one decode per source shared by several rows

    def frames_of(spec: str):
        if spec not in decoded:
            decoded[spec] = _first_frames(spec, out, "src-" + hashlib.sha256(spec.encode()).hexdigest()[:12], "gallery")
        return decoded[spec]

    for n, rec in enumerate(records):
        page.heading(str(rec.get("name")), 3)
        for w in rec.get("warnings") or []:
            page.paragraph(f"warning: {w}")
        figures = ""
        for what, desc in (("generated", rec.get("samples")), ("reference", rec.get("reference"))):
            spec = _source_spec(desc)
            if spec is None:
                page.paragraph(f"{what}: none recorded" + (" (its metrics need no reference)" if what == "reference" else ""))
                continue
            imgs, why = frames_of(spec)
            page.paragraph(f"{what}: {spec}" + (f": {why}" if why else ""))
            figures += _figures(imgs, what)
        if figures:
            page.raw(f'<div class="grid">{figures}</div>')
        _memorisation(page, rec, folder, out, n)


def _memorisation(page: Page, rec: dict, folder: Path, out: Path, n: int) -> None:
    section = rec.get("memorisation") if isinstance(rec.get("memorisation"), dict) else {}
    sheet = folder / (section.get("contact_sheet") or f"{rec.get('name')}.memorisation.png")
    if not sheet.is_file():
        if section:
            page.paragraph(f"memorisation contact sheet {sheet.name}: not found next to the record")
        return
    dest = out / "memorisation" / f"r{n}.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sheet, dest)
    mem = {k: v for k, v in (rec.get("scores") or {}).items() if k.startswith("memorisation")}
    caption = "memorisation: generated samples beside their nearest training clips"
    if mem:
        caption += " (" + ", ".join(f"{k} {lb.format_value(v)}" for k, v in sorted(mem.items())) + ")"
    page.image(f"memorisation/r{n}.png", f"memorisation contact sheet of {rec.get('name')}", caption)


def default_out(path: Path) -> Path:
    """A folder's report goes inside it (`metrics/results/report/`; load_records reads only *.json at the
    top, so it is never taken for a record); one record's goes to `report/<record name>/` beside it."""
    return path / "report" if path.is_dir() else path.parent / "report" / path.stem


def metrics_report(path: Path, out: Path | None = None) -> Path:
    """Write the evaluation report of a results folder or one record; returns its index.html."""
    path = Path(path)
    records, folder = _load(path)
    out = Path(out) if out is not None else default_out(path)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Evaluation results: {path.resolve().name}" if path.is_dir() else f"Evaluation record {path.stem}"
    page = Page(title)
    page.paragraph(f"{len(records)} result record(s).")
    _leaderboard(page, records)
    _gallery(page, records, folder, out)
    return page.write(out)
