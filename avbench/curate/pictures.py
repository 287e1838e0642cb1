"""Pictures for resample: square (centre crop or letterbox) and upright (display-matrix rotation).

Shrinking happens in the decoder's own pixel format: one libavfilter graph per output size crops the
decoded frame (a pointer offset, no copy) and scales it straight to the output size in RGB with
libswscale's area filter, so no full-resolution RGB picture is ever made (on 720p H.264 that
conversion plus OpenCV's resize cost half as much as decoding). The scaler flags include
`accurate_rnd` and `bitexact`, which make libswscale pick its exact C paths over CPU-dependent SIMD
rounding, so the same frames give the same pixels on every x86 machine; `full_chroma_int`
interpolates chroma for every output pixel (without it pairs of RGB pixels share one chroma sample,
~8 levels of error in blue at 64 px). This scaler's pixels differ
from the OpenCV `INTER_AREA` resize of clip format 1 (see `SCALER` and docs/curation-processing.md).

Phones store portrait video as landscape pictures plus a display matrix saying how to turn them;
FFmpeg attaches that matrix to every decoded frame (PyAV: `VideoFrame.rotation`, degrees
counter-clockwise). Multiples of 90° are applied exactly, to the small picture (turning commutes with
the centred crop and the scale); flips in the matrix are not applied.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import numpy as np

SWS_FLAGS = "area+accurate_rnd+bitexact+full_chroma_int"
SCALER = f"libswscale {SWS_FLAGS} (crop, then scale in the decoder's pixel format to rgb24)"


def square_geometry(width: int, height: int, size: int,
                    mode: str) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """For a stored picture `width`×`height`: the crop (w, h, x, y) and the size (w, h) it is scaled to.
    Both are the same whether or not the picture is turned afterwards (a centred square; a whole
    picture scaled by its longer side)."""
    if mode == "center-crop":
        s = min(width, height)
        return (s, s, (width - s) // 2, (height - s) // 2), (size, size)
    scale = size / max(width, height)
    return (width, height, 0, 0), (max(1, round(width * scale)), max(1, round(height * scale)))


class Shrinker:
    """Decoded av.VideoFrame → upright uint8 RGB [size, size, 3]; keeps its filter graph for as long as
    the frames keep their size and pixel format (a stream that changes them gets a new graph)."""

    def __init__(self, size: int, mode: str):
        self.size, self.mode = size, mode
        self._graph = None
        self._key = None

    def _configure(self, frame):
        import av

        (cw, ch, x, y), (sw, sh) = square_geometry(frame.width, frame.height, self.size, self.mode)
        graph = av.filter.Graph()
        src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                               time_base=frame.time_base or Fraction(1, 1000))
        chain = [src, graph.add("crop", f"{cw}:{ch}:{x}:{y}:exact=1"),
                 graph.add("scale", f"{sw}:{sh}:flags={SWS_FLAGS}"),
                 graph.add("format", "rgb24"), graph.add("buffersink")]
        for a, b in pairwise(chain):
            a.link_to(b)
        graph.configure()
        self._graph = graph

    def __call__(self, frame, rotation: int) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name)
        if key != self._key:
            self._configure(frame)
            self._key = key
        self._graph.push(frame)
        img = upright(self._graph.pull().to_ndarray(), rotation)
        if img.shape[:2] == (self.size, self.size):
            return img
        out = np.zeros((self.size, self.size, 3), np.uint8)  # letterbox: black bars
        h, w = img.shape[:2]
        y, x = (self.size - h) // 2, (self.size - w) // 2
        out[y : y + h, x : x + w] = img
        return out


def display_rotation(frame) -> int:
    """The counter-clockwise rotation (0, 90, 180, 270) that shows `frame` upright, from its display
    matrix (FFmpeg attaches the stream's matrix to each decoded frame); odd angles snap to 90°."""
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(rotation / 90.0)) % 4 * 90


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    # np.rot90 with k > 0 turns the picture counter-clockwise, the display matrix's sense
    return np.ascontiguousarray(np.rot90(img, k=rotation // 90)) if rotation else img
