"""`avbench sample`: generate audio-video pairs from a checkpoint (ours or an original MM-Diffusion file)."""

from __future__ import annotations

import typer

from avbench.commands.options import Config


def sample(
    cfg=Config("avbench.sample.pipeline:SampleConfig", skip=("fps", "sample_rate"),
               flags={"prefer_ema": "--ema/--raw-weights"}),
) -> None:
    """Sample (video, audio) pairs; optionally audio→video / video→audio and 64→256 super-resolution."""
    from avbench.sample import run_sampling

    doc = run_sampling(cfg)
    typer.echo(f"wrote {len(doc['samples'])} samples to {cfg.out} ({doc['sampler']['name']}, "
               f"{doc['sampler']['steps']} steps, seed {cfg.seed})")
