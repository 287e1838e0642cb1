"""Reading shards back: aligned audio-video windows for training and evaluation (see `windows.py`)."""

from avbench.data.windows import WindowConfig, WindowDataset, WindowLoader, make_loader

__all__ = ["WindowConfig", "WindowDataset", "WindowLoader", "make_loader"]
