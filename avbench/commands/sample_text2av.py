"""`avbench sample text2av`: the two-step baseline, CogVideoX (text → video) then MMAudio (→ audio)."""

from __future__ import annotations

import typer

from avbench.commands.options import Config


def text2av(cfg=Config("avbench.sample.text2av:Text2AVConfig")) -> None:
    """Text → video (CogVideoX) → audio (MMAudio): native outputs plus the benchmark's 10 fps / 16 kHz format."""
    from avbench.sample.text2av import run_text2av

    doc = run_text2av(cfg)
    typer.echo(f"wrote {len(doc['samples'])} samples to {cfg.out} ({doc['video_model']['id']} → "
               f"{doc['audio_model'].get('variant', cfg.audio_model)}, seed {cfg.seed})")
