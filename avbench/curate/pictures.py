"""Pictures for resample: upright (display-matrix rotation) and square (centre crop or letterbox).

Phones store portrait video as landscape pictures plus a display matrix saying how to turn them;
FFmpeg attaches that matrix to every decoded frame (PyAV: `VideoFrame.rotation`, degrees
counter-clockwise). Multiples of 90° are applied exactly; flips in the matrix are not applied.
"""

from __future__ import annotations

import numpy as np


def fit_square(img: np.ndarray, size: int, mode: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] → [size, size, 3] by centre crop or letterbox (black bars), area resampling."""
    import cv2

    h, w = img.shape[:2]
    if mode == "center-crop":
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return cv2.resize(img[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def display_rotation(frame) -> int:
    """The counter-clockwise rotation (0, 90, 180, 270) that shows `frame` upright, from its display
    matrix (FFmpeg attaches the stream's matrix to each decoded frame); odd angles snap to 90°."""
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(rotation / 90.0)) % 4 * 90


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    # np.rot90 with k > 0 turns the picture counter-clockwise, the display matrix's sense
    return np.ascontiguousarray(np.rot90(img, k=rotation // 90)) if rotation else img
