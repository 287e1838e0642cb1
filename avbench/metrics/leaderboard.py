"""Leaderboard export: one CSV row per result record (stable columns, protocol included) and Markdown."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from avbench.errors import MetricsError

COLUMNS = [
    "name", "date", "fvd", "kvd", "fad", "clap", "av_align",
    "fvd_profile", "fvd_resize", "fvd_bn_eps", "fvd_ddof", "fvd_frames", "fvd_weights_sha256",
    "fvd_n_generated", "fvd_n_reference",
    "fad_profile", "fad_resampler", "fad_weights_sha256", "fad_random_weights",
    "fad_n_generated_examples", "fad_n_reference_examples",
    "samples", "reference", "dataset_spec_hash", "overrides", "warnings", "avbench_version", "git_commit",
]
MARKDOWN_COLUMNS = ["name", "fvd", "kvd", "fad", "clap", "av_align", "fvd_profile", "fvd_n_generated", "fad_random_weights", "date"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True) if v else ""
    return str(v)


def record_row(rec: dict) -> dict[str, str]:
    s, p = rec.get("scores", {}), rec.get("protocols", {})
    fvd = p.get("fvd") or p.get("kvd") or {}
    prof = fvd.get("profile", {})
    fad = p.get("fad", {})
    fadp = fad.get("profile", {})
    ref = rec.get("reference") or {}
    row = {
        "name": rec.get("name"), "date": rec.get("date"),
        "fvd": s.get("fvd"), "kvd": s.get("kvd"), "fad": s.get("fad"), "clap": s.get("clap"), "av_align": s.get("av_align"),
        "fvd_profile": prof.get("name") or fvd.get("fvd_profile"), "fvd_resize": prof.get("resize"),
        "fvd_bn_eps": prof.get("bn_eps"), "fvd_ddof": prof.get("ddof"), "fvd_frames": prof.get("frames"),
        "fvd_weights_sha256": fvd.get("weights_sha256"), "fvd_n_generated": fvd.get("n_generated"),
        "fvd_n_reference": fvd.get("n_reference"),
        "fad_profile": fadp.get("name"), "fad_resampler": fadp.get("resampler"),
        "fad_weights_sha256": fad.get("weights_sha256"), "fad_random_weights": fad.get("random_weights"),
        "fad_n_generated_examples": fad.get("n_generated_examples"),
        "fad_n_reference_examples": fad.get("n_reference_examples"),
        "samples": (rec.get("samples") or {}).get("path"),
        "reference": ":".join(str(x) for x in (ref.get("path"), ref.get("split")) if x) if ref else None,
        "dataset_spec_hash": rec.get("dataset_spec_hash"), "overrides": rec.get("overrides"),
        "warnings": rec.get("warnings"), "avbench_version": rec.get("avbench_version"), "git_commit": rec.get("git_commit"),
    }
    return {c: _fmt(row.get(c)) for c in COLUMNS}


def load_records(results_dir: str | Path) -> list[dict]:
    records = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise MetricsError(f"{path}: not valid JSON ({exc}); fix or remove the record") from exc
    return sorted(records, key=lambda r: (r.get("date") or "", r.get("name") or ""))


def to_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(r[c].replace("|", "\\|") for c in MARKDOWN_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def export(results_dir: str | Path, csv_path: str | Path, markdown_path: str | Path | None = None) -> int:
    """Write the CSV (and the Markdown table); returns the number of rows."""
    from avbench.io import atomic_write_text

    rows = [record_row(r) for r in load_records(results_dir)]
    atomic_write_text(csv_path, to_csv(rows))
    if markdown_path is not None:
        atomic_write_text(markdown_path, to_markdown(rows))
    return len(rows)
