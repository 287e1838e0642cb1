"""`avbench report PATH`: one static HTML page for a dataset root, a training run or metrics results.

What PATH is decides the report: a dataset root (shards/index.json or records/), a training run
(log.jsonl), a metrics results folder or one results record (*.json with "scores"). Each kind is one
function `(path, out) -> index.html` in avbench/report/.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avbench.commands.options import Config
from avbench.errors import DataError, MissingInputError


def report_kind(path: Path) -> str:
    """"dataset" | "run" | "metrics" for PATH, or a DataError saying what was expected."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file or folder; pass a dataset root, a run folder or metrics results")
    if path.is_dir():
        if (path / "shards" / "index.json").is_file() or (path / "records").is_dir():
            return "dataset"
        if (path / "log.jsonl").is_file():
            return "run"
        if any(_is_result(p) for p in sorted(path.glob("*.json"))):
            return "metrics"
    elif path.suffix == ".json" and _is_result(path):
        return "metrics"
    raise DataError(f"{path}: not a dataset root (shards/index.json or records/), a training run (log.jsonl) "
                    "or metrics results (*.json with \"scores\"); pass one of those")


def _is_result(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "scores" in doc


def report_cmd(cfg=Config("avbench.report:ReportConfig", arguments=("path",))) -> None:
    """Write an HTML report (index.html + pictures, opens from disk) of a dataset, a training run or metrics.

    Exit code: 0 written, 2 PATH is none of those kinds or its files are unreadable.
    """
    kind = report_kind(cfg.path)
    if kind == "dataset":
        from avbench.report.dataset import dataset_report as write
    elif kind == "run":
        from avbench.report.run import run_report as write
    else:
        from avbench.report.metrics import metrics_report as write
    page = write(Path(cfg.path), cfg.out)
    typer.echo(f"report: {kind} report written to {page}")
