"""`avbench sample v2a`: MMAudio audio for existing videos (a dataset split or a folder of mp4)."""

from __future__ import annotations

import typer

from avbench.commands.options import Config


def v2a(cfg=Config("avbench.sample.v2a:V2AConfig")) -> None:
    """Video→audio with MMAudio: new audio for each clip, written in the `avbench sample` layout for `avbench eval`."""
    from avbench.sample.v2a import run_v2a

    doc = run_v2a(cfg)
    typer.echo(f"wrote {len(doc['samples'])} samples to {cfg.out} ({doc['model']['name']}, "
               f"{doc['sampler']['steps']} steps, cfg {doc['sampler']['cfg_strength']:g}, seed {cfg.seed})")
