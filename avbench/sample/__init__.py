"""`avbench sample`: generate (video, audio) pairs from a checkpoint, optionally conditioned and upsampled."""

from avbench.sample.pipeline import SampleConfig, run_sampling

__all__ = ["SampleConfig", "run_sampling"]
