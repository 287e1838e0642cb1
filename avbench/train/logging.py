"""Run logs: `RUN/log.jsonl` (one JSON object per logged step, appended and flushed), TensorBoard
event files under `RUN/tb/`, and a one-line rich progress display. Only rank 0 creates a `RunLogger`;
other ranks get a `NullLogger`, so they write nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class NullLogger:
    def log(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def event(self, step: int, kind: str, **fields: Any) -> None:
        pass

    def video(self, step: int, tag: str, video, fps: int) -> None:
        pass

    def audio(self, step: int, tag: str, audio, sample_rate: int) -> None:
        pass

    def progress(self, step: int, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class RunLogger(NullLogger):
    def __init__(self, run: Path, *, total_steps: int, start_step: int, tensorboard: bool = True,
                 console: bool = True):
        self.run = Path(run)
        self.run.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run / "log.jsonl", "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run / "tb"))
            except ImportError as e:  # tensorboard is a dependency; say so instead of failing a long run
                self.event(start_step, "warning", message=f"TensorBoard disabled: {e}; pip install tensorboard")
        self._progress = None
        if console:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), transient=False,
            )
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step, info="")
            self._progress.start()

    def _write(self, obj: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(obj, sort_keys=True, allow_nan=True) + "\n")
        self._jsonl.flush()

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self._write({"type": "train", "step": step, "time": round(time.time(), 3), **metrics})
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def event(self, step: int, kind: str, **fields: Any) -> None:
        self._write({"type": kind, "step": step, "time": round(time.time(), 3), **fields})
        if self._progress is not None and kind in ("warning", "error", "preempted", "checkpoint", "preview"):
            self._progress.console.print(f"[{kind}] step {step}: " + ", ".join(f"{k}={v}" for k, v in fields.items()),
                                         markup=False, highlight=False)

    def video(self, step: int, tag: str, video, fps: int) -> None:
        """`video` [N, T, 3, H, W] float in [0, 1]."""
        if self._tb is not None:
            import importlib.util

            if importlib.util.find_spec("moviepy") is not None:
                self._tb.add_video(tag, video, step, fps=fps)
            else:  # TensorBoard's add_video needs moviepy; show the frames as images (the mp4 is the output)
                self._tb.add_images(tag, video[0], step)

    def audio(self, step: int, tag: str, audio, sample_rate: int) -> None:
        """`audio` [L] float in [-1, 1]."""
        if self._tb is not None:
            self._tb.add_audio(tag, audio.reshape(1, -1), step, sample_rate=sample_rate)

    def progress(self, step: int, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
        self._jsonl.close()


def read_log(run: Path, kind: str | None = "train") -> list[dict[str, Any]]:
    path = Path(run) / "log.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("type") == kind]
