"""`avbench sample [joint|...]`: generate audio-video pairs from a checkpoint (ours or an original MM-Diffusion
file); `avbench sample OPTIONS` is `avbench sample joint OPTIONS`, the spelling it had before it had siblings."""

from __future__ import annotations

import typer

from avbench.commands.options import Config, Group
from avbench.commands.sample_text2av import text2av
from avbench.commands.sample_v2a import v2a


def joint(
    cfg=Config("avbench.sample.pipeline:SampleConfig", skip=("fps", "sample_rate"),
               flags={"prefer_ema": "--ema/--raw-weights"}),
) -> None:
    """Sample (video, audio) pairs; optionally audio→video / video→audio and 64→256 super-resolution."""
    from avbench.sample import run_sampling

    doc = run_sampling(cfg)
    typer.echo(f"wrote {len(doc['samples'])} samples to {cfg.out} ({doc['sampler']['name']}, "
               f"{doc['sampler']['steps']} steps, seed {cfg.seed})")


GROUP = Group("Generate samples: joint MM-Diffusion (+SR; `avbench sample OPTIONS` runs `joint`), video→audio, "
              "text→video→audio.",
              {"joint": joint, "v2a": v2a, "text2av": text2av}, default="joint")
