"""Leaderboard export: one CSV row per result record (stable columns, protocol included) and Markdown tables.

Rows are grouped by benchmark track. Within a track, the reference fingerprint, the eval protocol and
the track file's sha256 of the majority of its rows (ties: the earliest row's) are the track's; a row
that differs in any of them is kept but FLAGGED (`flag` column, and a separate "not comparable" table in
the Markdown), not silently mixed in: a flagged row is still a real result, only not one of that track.
Records without a track are grouped by eval protocol. Each Markdown table holds one track or one
protocol, and its score columns carry the protocol name, so numbers of different protocols never
share a column.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from avbench.errors import MetricsError
from avbench.io import atomic_write_text

SCORES = ["fvd", "kvd", "fad", "fad_audioclip", "clap", "av_align"]  # fad_audioclip is never merged with fad
COLUMNS = [
    "name", "date", "track", "protocol", *SCORES, "other_scores",
    "fvd_profile", "fvd_resize", "fvd_bn_eps", "fvd_ddof", "fvd_frames", "fvd_weights_sha256",
    "fvd_n_generated", "fvd_n_reference",
    "fad_profile", "fad_resampler", "fad_weights_sha256", "fad_random_weights",
    "fad_n_generated_examples", "fad_n_reference_examples",
    "fad_audioclip_profile", "fad_audioclip_weights_sha256",
    "samples", "reference", "reference_fingerprint", "track_sha256", "protocol_seed", "flag",
    "dataset_spec_hash", "overrides", "warnings", "avbench_version", "git_commit",
]
MARKDOWN_TAIL = ["fvd_profile", "fvd_n_generated", "fad_random_weights", "date"]
DEFAULT_PROTOCOL = "avbench"  # records written before protocols were recorded used this rule


def format_value(v) -> str:
    """How a value is written in a leaderboard cell (also by the metrics report)."""
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
    track = rec.get("track") or {}
    proto = rec.get("protocol") or {}
    row = {
        "name": rec.get("name"), "date": rec.get("date"),
        "track": track.get("name"), "protocol": proto.get("name") or DEFAULT_PROTOCOL,
        **{k: s.get(k) for k in SCORES},
        "other_scores": {k: v for k, v in s.items() if k not in SCORES},
        "fvd_profile": prof.get("name") or fvd.get("fvd_profile"), "fvd_resize": prof.get("resize"),
        "fvd_bn_eps": prof.get("bn_eps"), "fvd_ddof": prof.get("ddof"), "fvd_frames": prof.get("frames"),
        "fvd_weights_sha256": fvd.get("weights_sha256"), "fvd_n_generated": fvd.get("n_generated"),
        "fvd_n_reference": fvd.get("n_reference"),
        "fad_profile": fadp.get("name"), "fad_resampler": fadp.get("resampler"),
        "fad_weights_sha256": fad.get("weights_sha256"), "fad_random_weights": fad.get("random_weights"),
        "fad_n_generated_examples": fad.get("n_generated_examples"),
        "fad_n_reference_examples": fad.get("n_reference_examples"),
        "fad_audioclip_profile": (p.get("fad_audioclip", {}).get("profile") or {}).get("name"),
        "fad_audioclip_weights_sha256": p.get("fad_audioclip", {}).get("weights_sha256"),
        "samples": (rec.get("samples") or {}).get("path"),
        "reference": ":".join(str(x) for x in (ref.get("path"), ref.get("split")) if x) if ref else None,
        "reference_fingerprint": rec.get("reference_fingerprint"), "track_sha256": track.get("sha256"),
        "protocol_seed": proto.get("seed"),
        "dataset_spec_hash": rec.get("dataset_spec_hash"), "overrides": rec.get("overrides"),
        "warnings": rec.get("warnings"), "avbench_version": rec.get("avbench_version"), "git_commit": rec.get("git_commit"),
    }
    return {c: format_value(row.get(c)) for c in COLUMNS}


def _majority(values: list[str]) -> str:
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)  # ties: the earliest row's


def flag_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Set `flag` on every tracked row whose fingerprint, protocol or track file differs from its track's."""
    by_track: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["track"]:
            by_track.setdefault(r["track"], []).append(r)
    for track, group in by_track.items():
        for col, what in (("reference_fingerprint", "reference fingerprint"), ("protocol", "protocol"),
                          ("track_sha256", "track file sha256")):
            want = _majority([r[col] for r in group])
            for r in group:
                if r[col] != want and not r["flag"]:
                    have = r[col][:12] or "(none)"
                    r["flag"] = (f"{what} {have} differs from track {track}'s {want[:12] or '(none)'} "
                                 f"({sum(x[col] == want for x in group)} of {len(group)} rows): not comparable")
    return rows


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


def _cell(v: str) -> str:
    return v.replace("|", "\\|")


def score_columns(rows: list[dict[str, str]]) -> list[str]:
    """The score columns a table of these rows shows: the fixed ones in use, then any other score."""
    other = sorted({k for r in rows for k in json.loads(r["other_scores"] or "{}")})
    return [c for c in SCORES if any(r[c] for r in rows)] + other


def _table(rows: list[dict[str, str]], protocol: str, extra: tuple[str, ...] = ()) -> list[str]:
    scores = score_columns(rows)
    head = ["name", *(f"{c} ({protocol})" for c in scores), *MARKDOWN_TAIL, *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        others = json.loads(r["other_scores"] or "{}")
        vals = [r["name"], *(r[c] if c in SCORES else format_value(others.get(c)) for c in scores),
                *(r[c] for c in MARKDOWN_TAIL), *(r[c] for c in extra)]
        lines.append("| " + " | ".join(_cell(v) for v in vals) + " |")
    return lines


@dataclass
class Table:
    rows: list[int]  # indices into the rows given to `sections`
    protocol: str
    flagged: bool = False
    caption: str | None = None


@dataclass
class Section:
    heading: str
    tables: list[Table] = field(default_factory=list)
    note: str | None = None  # said instead of the comparable table when there is none


def sections(rows: list[dict[str, str]]) -> list[Section]:
    """How the leaderboard is laid out (Markdown here, HTML in the metrics report): one section per
    track, its comparable rows first and each flagged protocol in a table of its own; then one section
    per protocol for the records without a track."""
    out: list[Section] = []
    for track in sorted({r["track"] for r in rows if r["track"]}):
        group = [i for i, r in enumerate(rows) if r["track"] == track]
        good = [i for i in group if not rows[i]["flag"]]
        ref = rows[(good or group)[0]]
        sec = Section(f"Track {track} · protocol {ref['protocol']} · reference {ref['reference_fingerprint'][:12]}")
        if good:
            sec.tables.append(Table(good, ref["protocol"]))
        else:
            sec.note = "(no comparable rows)"
        flagged = [i for i in group if rows[i]["flag"]]
        for protocol in sorted({rows[i]["protocol"] for i in flagged}):
            sec.tables.append(Table([i for i in flagged if rows[i]["protocol"] == protocol], protocol, flagged=True,
                                    caption=f"Not comparable with track {track} (flagged), protocol {protocol}:"))
        out.append(sec)
    for protocol in sorted({r["protocol"] for r in rows if not r["track"]}):
        idx = [i for i, r in enumerate(rows) if not r["track"] and r["protocol"] == protocol]
        out.append(Section(f"No track · protocol {protocol}", [Table(idx, protocol)]))
    return out


def to_markdown(rows: list[dict[str, str]]) -> str:
    """One table per track (flagged rows in their own table below it), then one per protocol for the
    records without a track."""
    out: list[str] = []
    for sec in sections(rows):
        out += [f"### {sec.heading}", ""]
        if sec.note:
            out.append(sec.note)
        for table in sec.tables:
            if table.caption:
                out += ["", table.caption, ""]
            out += _table([rows[i] for i in table.rows], table.protocol, extra=("flag",) if table.flagged else ())
        out.append("")
    return "\n".join(out)


def export(results_dir: str | Path, csv_path: str | Path, markdown_path: str | Path | None = None) -> int:
    """Write the CSV (and the Markdown tables); returns the number of rows. Flagged rows are written too."""

    rows = flag_rows([record_row(r) for r in load_records(results_dir)])
    atomic_write_text(csv_path, to_csv(rows))
    if markdown_path is not None:
        atomic_write_text(markdown_path, to_markdown(rows))
    return len(rows)
