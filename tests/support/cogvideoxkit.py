"""A tiny CogVideoX model folder for the text→video tests.

The builder is `avbench.sample.tiny.write_tiny_pipeline` (real diffusers/transformers classes at a toy
size, seeded random weights), kept in the package because `scripts/bench_text2av.py --tiny` needs it too
and scripts never import tests. The folder is what `CogVideoXPipeline.save_pretrained` writes, so the code
under test loads it the way it loads a real model folder. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from avbench.sample.tiny import TINY_FRAMES, TINY_SIZE, TINY_TEXT_LEN, write_tiny_pipeline

__all__ = ["TINY_FRAMES", "TINY_SIZE", "TINY_TEXT_LEN", "write_tiny_cogvideox"]


def write_tiny_cogvideox(directory: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline (seeded) as a diffusers folder; returns the folder."""
    return write_tiny_pipeline(Path(directory), seed)
