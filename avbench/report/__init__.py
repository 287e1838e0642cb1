"""Static HTML reports: a dataset root, a training run, a metrics results folder.

The layer between commands and train|sample|metrics (DESIGN "Layout"): it reads what those produce and
writes `report/index.html` with its pictures beside it. page.py builds the HTML, plots.py the PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ReportConfig:
    # metadata["help"] is the help of the generated `avbench report` option
    path: Path = field(metadata={"help": "A dataset root, a training run folder (log.jsonl), or a metrics "
                                         "results folder or one results record (*.json with scores)."})
    out: Path | None = field(default=None, metadata={
        "help": "Folder for index.html and its pictures (default: PATH/report/; for metrics results "
                "the report/ folder beside them)."})
