"""Video frames for libx264 with fully defined memory (reproducible encoder output)."""

from __future__ import annotations

import numpy as np


def yuv420_frame(img: np.ndarray):
    """RGB uint8 [H, W, 3] → an av.VideoFrame in yuv420p whose row padding is zeroed.

    Frame buffers get aligned line sizes and the padding bytes are uninitialised; libx264 was seen to
    produce different bytes for the same 32 px pictures from run to run, so nothing uninitialised may
    reach the encoder.
    """
    import av

    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size).copy()
        rows[:, plane.width :] = 0
        plane.update(rows.tobytes())
    return frame
