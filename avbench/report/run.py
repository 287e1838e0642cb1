"""`avbench report RUN`: the training curves of a run (from `RUN/log.jsonl`) and its preview clips in order.

The curves are the keys the training loop logs (avbench/train/loop.py): the total loss and its per-modality
terms (`loss_video`/`loss_audio`, or `loss_mse`/`loss_vb` for the SR stage), the per-timestep-quartile
losses `loss_q0`…`loss_q3`, `grad_norm`, `lr`, `samples_per_s`, `data_wait_frac` and, on CUDA,
`gpu_mem_gb`. Previews (`RUN/previews/step-<step>-<i>.mp4`) are copied beside the page with a first-frame
picture each. Everything is a function of the run's files, so the same run gives the same bytes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from avbench.errors import AvbenchError
from avbench.metrics.sources import decode_mp4
from avbench.report import plots
from avbench.report.page import Page, esc

_PREVIEW = re.compile(r"^step-(\d+)-(\d+)\.mp4$")
# (file stem, title, y label, keys) of each curve plot; a plot whose keys were never logged is left out
_PLOTS = [
    ("quartiles", "Loss per timestep quartile", "loss", ["loss_q0", "loss_q1", "loss_q2", "loss_q3"]),
    ("grad_norm", "Gradient norm (before clipping)", "grad norm", ["grad_norm"]),
    ("lr", "Learning rate", "lr", ["lr"]),
    ("samples_per_s", "Throughput", "samples/s", ["samples_per_s"]),
    ("data_wait", "Fraction of step time waiting for data", "fraction", ["data_wait_frac"]),
    ("memory", "Peak GPU memory", "GiB", ["gpu_mem_gb"]),
]
_EVENTS = ("start", "checkpoint", "preview", "warning", "overflow", "preempted", "export", "error")


class RunReportError(AvbenchError):
    """The folder is not a training run the report can read; the message names the file and the fix."""


def _read_log(path: Path) -> tuple[list[dict], bool]:
    """(log lines, whether the last one was cut off). A run killed mid-write leaves its last line
    incomplete, and the report of a crashed run is one a reader wants; a bad line before it is damage."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows, truncated = [], False
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i < len(lines) - 1:
                raise RunReportError(f"{path}: line {i + 1} is not JSON ({exc}); remove or repair it") from exc
            truncated = True
    return [r for r in rows if isinstance(r, dict)], truncated


def _train_rows(log: list[dict]) -> list[dict]:
    """One row per step: a resumed run appends steps it had already logged before the crash, and the
    later line is what the resumed run actually trained."""
    by_step: dict[int, dict] = {}
    for row in log:
        if row.get("type") == "train" and isinstance(row.get("step"), int):
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def _series(rows: list[dict], keys: list[str]) -> dict[str, tuple[list[float], list[float]]]:
    out = {}
    for key in keys:
        pts = [(r["step"], float(r[key])) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            out[key] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def _modality_keys(rows: list[dict]) -> list[str]:
    """`loss` and its per-modality terms, whichever the objective logged (quartiles and the fp16 loss
    scale share the prefix but are not loss terms)."""
    keys = sorted({k for r in rows for k in r if k.startswith("loss_")
                   and not re.fullmatch(r"loss_q\d+", k) and k != "loss_scale"})
    return ["loss", *keys]


def _previews(run: Path) -> list[Path]:
    def order(p: Path):
        m = _PREVIEW.match(p.name)
        return (0, int(m.group(1)), int(m.group(2)), "") if m else (1, 0, 0, p.name)

    return sorted((run / "previews").glob("*.mp4"), key=order)


def first_frame_png(mp4: Path, png: Path) -> Path:
    """The first frame of `mp4` as a PNG (PIL writes no time or software chunk: same frame, same bytes)."""
    frames, _, _, _ = decode_mp4(mp4, 1, True, False)
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(frames[0])).save(png, format="PNG")
    return png


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_report(path: Path, out: Path | None = None) -> Path:
    """Write the run's report (default RUN/report/) and return its index.html."""
    run = Path(path)
    log_path = run / "log.jsonl"
    if not log_path.is_file():
        raise RunReportError(f"{log_path}: missing; `avbench report RUN` needs the folder `avbench train --out` wrote")
    log, truncated = _read_log(log_path)
    rows = _train_rows(log)
    events = [r for r in log if r.get("type") in _EVENTS]
    out = Path(out) if out is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)

    page = Page(f"Training run {run.resolve().name}")
    if truncated:
        page.paragraph("The last line of log.jsonl is incomplete (the run stopped while writing it); it is left out.")
    if rows:
        last = rows[-1]
        page.paragraph(f"{len(rows)} logged steps, {rows[0]['step']} … {last['step']}.")
        page.table(["metric", f"step {last['step']}"],
                   [[k, _fmt(v)] for k, v in sorted(last.items()) if k not in ("type", "step", "time")])
    else:
        page.paragraph("log.jsonl holds no training steps yet (the first is logged after log.every steps).")

    page.heading("Curves")
    plot_dir = out / "plots"
    figures = []  # (file, title, caption), shown side by side
    loss = _series(rows, _modality_keys(rows))
    if loss:
        values = [v for _, ys in loss.values() for v in ys if math.isfinite(v)]
        # log scale only once the loss spans a decade: over a short run it just squashes the curves
        logy = bool(values) and min(values) > 0 and max(values) > 10 * min(values)
        plots.line_plot(plot_dir / "loss.png", loss, title="Loss per modality", xlabel="step", ylabel="loss", logy=logy)
        figures.append(("loss.png", "loss per modality", "loss and its per-modality terms"))
    memory_logged = False
    for stem, title, ylabel, keys in _PLOTS:
        series = _series(rows, keys)
        if not series:
            continue
        memory_logged |= stem == "memory"
        plots.line_plot(plot_dir / f"{stem}.png", series, title=title, xlabel="step", ylabel=ylabel)
        note = (" (0 where no sample of the log window drew a t in that quartile: small batches leave some empty)"
                if stem == "quartiles" else "")
        figures.append((f"{stem}.png", title, ", ".join(keys) + note))
    if figures:
        page.raw('<div class="grid">' + "".join(
            # 560 of the plots' 600 px: two fit side by side in the page's 1200 px column
            f'<figure><img src="plots/{esc(f)}" alt="{esc(t)}" width="560"><figcaption>{esc(c)}</figcaption></figure>'
            for f, t, c in figures) + "</div>")
    if not memory_logged:
        page.paragraph("Memory: not logged (the loop logs gpu_mem_gb on CUDA devices only).")

    page.heading("Previews")
    previews = _previews(run)
    if not previews:
        page.paragraph("No previews (log.preview_every = 0, or none was due yet).")
    parts = []
    for mp4 in previews:
        dest = out / "previews" / mp4.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mp4, dest)
        first_frame_png(mp4, out / "previews" / f"{mp4.stem}.png")
        m = _PREVIEW.match(mp4.name)
        label = f"step {int(m.group(1))}, sample {m.group(2)}" if m else mp4.name
        parts.append(
            f'<figure><img src="previews/{esc(mp4.stem)}.png" alt="first frame of {esc(mp4.name)}" width="128">'
            f'<video controls preload="metadata" muted><source src="previews/{esc(mp4.name)}" type="video/mp4">'
            f'</video><figcaption>{esc(label)}</figcaption></figure>')
    if parts:
        page.raw('<div class="grid">' + "".join(parts) + "</div>")

    if events:
        page.heading("Events")
        page.table(["step", "event", "details"],
                   [[str(e.get("step")), e["type"],
                     "; ".join(f"{k}={_event_value(run, v)}" for k, v in sorted(e.items())
                               if k not in ("type", "step", "time"))] for e in events])
    return page.write(out)


def _event_value(run: Path, v) -> str:
    """Paths relative to the run, so the page does not depend on where the run was written."""
    if isinstance(v, list):
        return ", ".join(_event_value(run, x) for x in v)
    s = str(v)
    prefix = str(run.resolve()) + "/"
    return s.replace(prefix, "").replace(str(run) + "/", "")
