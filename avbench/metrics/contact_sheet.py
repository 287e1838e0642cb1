"""Contact sheet PNG for the memorisation check: each row shows a generated sample's frames on the left and
the frames of its nearest training clip on the right, under a caption with both keys and the distance.

The geometry is fixed by `SheetLayout`, so a test (or a reader with an image viewer) knows where each tile is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from avbench.io import atomic_path

BACKGROUND = (255, 255, 255)
FLAGGED = (200, 30, 30)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class SheetRow:
    sample_key: str
    sample_frames: np.ndarray  # uint8 [F, tile, tile, 3]
    train_key: str
    train_frames: np.ndarray  # uint8 [F, tile, tile, 3]
    caption: str  # may hold several lines ("\n")
    flagged: bool = False


@dataclass(frozen=True)
class SheetLayout:
    tile: int
    frames: int  # tiles per side
    rows: int
    pad: int = 4
    gap: int = 16  # between the sample's tiles and the neighbour's
    caption_lines: int = 1
    header_h: int = 14  # the column titles

    @property
    def caption_h(self) -> int:
        return 12 * self.caption_lines + 2

    @property
    def width(self) -> int:
        return 2 * self.pad + 2 * self.frames * self.tile + self.gap

    @property
    def row_h(self) -> int:
        return self.caption_h + self.tile + self.pad

    @property
    def height(self) -> int:
        return self.pad + self.header_h + self.rows * self.row_h

    def tile_box(self, row: int, side: str, frame: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a tile; side is "sample" (left half) or "train" (right half)."""
        x = self.pad + frame * self.tile + (self.frames * self.tile + self.gap if side == "train" else 0)
        y = self.pad + self.header_h + row * self.row_h + self.caption_h
        return x, y, x + self.tile, y + self.tile


def thumbnails(frames: np.ndarray, tile: int, count: int = 3) -> np.ndarray:
    """`count` frames spread over the clip (first, …, last), each resized to tile×tile: uint8 [count, tile, tile, 3]."""
    t = len(frames)
    idx = np.linspace(0, t - 1, count).round().astype(int) if t else np.zeros(0, int)
    out = np.zeros((count, tile, tile, 3), np.uint8)
    for j, i in enumerate(idx):
        f = frames[i]
        if f.shape[:2] != (tile, tile):
            f = np.asarray(Image.fromarray(f).resize((tile, tile), Image.BILINEAR))
        out[j] = f
    return out


def write_contact_sheet(path: str | Path, rows: list[SheetRow], tile: int,
                        titles: tuple[str, str] = ("generated sample", "nearest training clip")) -> SheetLayout:
    """Write the PNG atomically and return its layout. Flagged rows get a red caption and outline."""
    frames = max((len(r.sample_frames) for r in rows), default=1)
    lines = max((r.caption.count("\n") + 1 for r in rows), default=1)
    layout = SheetLayout(tile=tile, frames=frames, rows=max(len(rows), 1), caption_lines=lines)
    img = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((layout.pad, layout.pad), titles[0], fill=TEXT, font=font)
    draw.text((layout.tile_box(0, "train", 0)[0], layout.pad), titles[1], fill=TEXT, font=font)
    if not rows:
        draw.text((layout.pad, layout.pad + layout.header_h), "no samples", fill=TEXT, font=font)
    for r, row in enumerate(rows):
        y = layout.pad + layout.header_h + r * layout.row_h
        for k, line in enumerate(row.caption.split("\n")):
            draw.text((layout.pad, y + 12 * k), line, fill=FLAGGED if row.flagged else TEXT, font=font)
        for side, clip in (("sample", row.sample_frames), ("train", row.train_frames)):
            for j, f in enumerate(clip):
                x0, y0, _, _ = layout.tile_box(r, side, j)
                img.paste(Image.fromarray(np.ascontiguousarray(f)), (x0, y0))
        if row.flagged:  # a red outline around the neighbour's tiles, outside them so no pixel of a frame is hidden
            x0, y0, _, _ = layout.tile_box(r, "train", 0)
            _, _, x1, y1 = layout.tile_box(r, "train", len(row.train_frames) - 1)
            draw.rectangle((x0 - 2, y0 - 1, x1 + 1, y1), outline=FLAGGED, width=1)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return layout
