"""avbench: reproducible audio-video datasets, MM-Diffusion baselines and metrics with named protocols."""

__version__ = "0.1.0"
