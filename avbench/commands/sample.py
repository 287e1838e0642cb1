"""`avbench sample`: generate audio-video pairs from a checkpoint (ours or an original MM-Diffusion file)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("sample")(sample)


def sample(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="avbench checkpoint (RUN/model.pt) or an original MM-Diffusion state-dict file."),
    out: Path = typer.Option(..., "--out", help="Output folder: video/<i>.mp4, audio/<i>.wav, samples.json."),
    num_samples: int = typer.Option(16, "--num-samples", help="How many samples."),
    batch_size: int = typer.Option(4, "--batch-size", help="Samples per model call."),
    sampler: str = typer.Option("dpmpp-3s", "--sampler", help="ddpm | ddim | dpmpp-2m | dpmpp-3s (DPM-Solver++ singlestep order 3, the seed's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (= model calls). Default: 20 for DPM-Solver++, 50 for DDIM, every training step for DDPM."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Timesteps visited: linspace | logsnr | leading. Default: logsnr for DPM-Solver++, linspace otherwise."),
    eta: float = typer.Option(0.0, "--eta", help="DDIM η (0 = deterministic)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clamp the denoised estimate to [-1, 1] at every step."),
    seed: int = typer.Option(0, "--seed", help="Sample i uses seed + i; the same seed gives the same samples."),
    sr_checkpoint: Optional[Path] = typer.Option(None, "--sr-checkpoint", help="Super-resolution checkpoint (64→256) applied to every frame."),
    sr_sampler: str = typer.Option("ddim", "--sr-sampler", help="Sampler of the super-resolution pass."),
    sr_steps: int = typer.Option(25, "--sr-steps", help="Steps of the super-resolution pass."),
    condition_audio: Optional[Path] = typer.Option(None, "--condition-audio", help="Folder of .wav/.flac: generate video for this audio (A→V)."),
    condition_video: Optional[Path] = typer.Option(None, "--condition-video", help="Folder of .mp4 (10 fps): generate audio for this video (V→A)."),
    guidance_scale: float = typer.Option(0.0, "--guidance-scale", help="Gradient guidance towards the condition (0 = replacement only)."),
    original_config: Optional[str] = typer.Option(None, "--original-config", help="Config preset of an original MM-Diffusion file: seed | fixture_small | tiny (default seed, recorded as a note)."),
    sr_original_config: Optional[str] = typer.Option(None, "--sr-original-config", help="Config preset of an original SR file."),
    diffusion_steps: Optional[int] = typer.Option(None, "--diffusion-steps", help="Training diffusion steps of an original file (default 1000, recorded as a note); for avbench checkpoints it must match the stored value."),
    raw_weights: bool = typer.Option(False, "--raw-weights", help="Use the raw instead of the EMA weights."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, …"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Sample (video, audio) pairs; optionally audio→video / video→audio and 64→256 super-resolution."""
    from avbench.sample import SampleConfig, run_sampling

    cfg = SampleConfig(
        checkpoint=checkpoint, out=out, num_samples=num_samples, batch_size=batch_size, sampler=sampler,
        steps=steps, spacing=spacing, eta=eta, clip=clip, seed=seed, sr_checkpoint=sr_checkpoint,
        sr_sampler=sr_sampler, sr_steps=sr_steps, condition_audio=condition_audio, condition_video=condition_video,
        guidance_scale=guidance_scale, original_config=original_config, sr_original_config=sr_original_config,
        diffusion_steps=diffusion_steps, prefer_ema=not raw_weights, device=device, progress=progress,
    )
    try:
        doc = run_sampling(cfg)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {len(doc['samples'])} samples to {out} ({doc['sampler']['name']}, "
               f"{doc['sampler']['steps']} steps, seed {seed})")
