"""Matplotlib figures written as deterministic PNGs (same data, same bytes).

Agg is selected before pyplot is imported so a report renders on a node without a display; matplotlib is
imported by this module only, and this module only by the report layer, so `avbench --help` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first

DPI = 100


def figure(width: float = 6.0, height: float = 3.0):
    """A fresh figure and axes; the caller passes it to save_png, which closes it."""
    return plt.subplots(figsize=(width, height), dpi=DPI)


def save_png(fig, path: Path) -> Path:
    """Fixed dpi and no Software/timestamp chunks: matplotlib's PNG is then a function of the pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def line_plot(path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
              xlabel: str = "", ylabel: str = "", logy: bool = False) -> Path:
    """One line per named (x, y) series, in the dict's order."""
    fig, ax = figure()
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), label=name, linewidth=1.2)
    if logy:
        ax.set_yscale("log")
    _labels(ax, title, xlabel, ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def histogram(path: Path, values: Sequence[float], *, bins: int | Sequence[float] = 20, title: str = "",
              xlabel: str = "", ylabel: str = "count") -> Path:
    fig, ax = figure()
    vals = np.asarray(list(values), dtype=float)
    if vals.size:
        ax.hist(vals, bins=bins, color="#4C72B0", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    _labels(ax, title, xlabel, ylabel)
    fig.tight_layout()
    return save_png(fig, path)


def bar_chart(path: Path, labels: Sequence[str], values: Sequence[float], *, title: str = "",
              ylabel: str = "") -> Path:
    fig, ax = figure()
    ax.bar(range(len(labels)), list(values), color="#4C72B0")
    ax.set_xticks(range(len(labels)), list(labels), rotation=30, ha="right", fontsize=8)
    _labels(ax, title, "", ylabel)
    fig.tight_layout()
    return save_png(fig, path)


def waveform_strip(path: Path, samples: np.ndarray, sample_rate: int, *, width: float = 3.2,
                   height: float = 0.8) -> Path:
    """A thin waveform picture for a clip grid (mono mixdown, no axes)."""
    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:  # (samples, channels) as soundfile reads it, or (channels, samples)
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    t = np.arange(x.size) / float(sample_rate)
    ax.plot(t, x, linewidth=0.4, color="#333")
    ax.set_ylim(-1.0, 1.0)
    ax.set_xlim(0, max(t[-1] if t.size else 1.0, 1e-3))
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    return save_png(fig, path)


def _labels(ax, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title, fontsize=10)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
