"""Cheap per-clip quality filters, computed on the resampled clip (10 fps frames, 16 kHz mono audio).

Each filter returns its measured value, its thresholds and a verdict; a clip that fails one keeps its
files and its row in `clips.json`, with `keep: false` and the filter names in `reasons`.

- silence: RMS of each 0.1 s audio window (one output frame) in dBFS (full scale = amplitude 1.0);
  the clip is silent when more than `silence_fraction` of its windows are below `silence_dbfs`.
- frozen: mean absolute difference (0–255) between consecutive 10 fps frames at the smallest output
  size; frozen when more than `frozen_fraction` of the steps are below `frozen_mad`.
- black: mean luma (BT.601, 0–255) per frame; black when more than `black_fraction` of the frames are
  below `black_luma`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avbench.curate.spec import Filters


def window_dbfs(audio: np.ndarray, window: int) -> np.ndarray:
    """RMS level of each whole `window` of a mono float signal, in dBFS (silence → -inf clipped to -200)."""
    n = len(audio) // window
    if n == 0:
        return np.zeros(0)
    w = audio[: n * window].astype(np.float64).reshape(n, window)
    rms = np.sqrt((w * w).mean(axis=1))
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-10)), -200.0)


def frame_mad(frames: np.ndarray) -> np.ndarray:
    """Mean |difference| between consecutive uint8 frames [N, H, W, 3] → [N-1]."""
    if len(frames) < 2:
        return np.zeros(0)
    out = np.empty(len(frames) - 1)
    for i in range(len(frames) - 1):  # a loop keeps the int16 temporary at one frame
        out[i] = np.abs(frames[i + 1].astype(np.int16) - frames[i].astype(np.int16)).mean()
    return out


def frame_luma(frames: np.ndarray) -> np.ndarray:
    """Mean BT.601 luma of each uint8 RGB frame [N, H, W, 3] → [N]."""
    if len(frames) == 0:
        return np.zeros(0)
    means = frames.reshape(len(frames), -1, 3).mean(axis=1)
    return means @ np.array([0.299, 0.587, 0.114])


def evaluate_filters(frames: np.ndarray, audio: np.ndarray, samples_per_frame: int, cfg: Filters) -> dict[str, Any]:
    """All filters for one clip → {"filters": {name: {...}}, "keep": bool, "reasons": [names]}."""
    db = window_dbfs(audio, samples_per_frame)
    mad = frame_mad(frames)
    luma = frame_luma(frames)

    def frac(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else 0.0

    results = {
        "silence": {"fraction": frac(db < cfg.silence_dbfs), "threshold_dbfs": cfg.silence_dbfs,
                    "max_fraction": cfg.silence_fraction,
                    "mean_dbfs": float(db.mean()) if db.size else None},
        "frozen": {"fraction": frac(mad < cfg.frozen_mad), "threshold_mad": cfg.frozen_mad,
                   "max_fraction": cfg.frozen_fraction, "mean_mad": float(mad.mean()) if mad.size else None},
        "black": {"fraction": frac(luma < cfg.black_luma), "threshold_luma": cfg.black_luma,
                  "max_fraction": cfg.black_fraction, "mean_luma": float(luma.mean()) if luma.size else None},
    }
    for r in results.values():
        r["flagged"] = r["fraction"] > r["max_fraction"]
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = round(v, 4)  # stable JSON across platforms' last-bit float differences
    reasons = [name for name, r in results.items() if r["flagged"]]
    return {"filters": results, "keep": not reasons, "reasons": reasons}
