"""`avbench train baseline|superres`: train the MM-UNet or the 64→256 super-resolution U-Net.

Each command builds one `TrainConfig` (a named TOML config + `--set` overrides + shortcut options) and
calls `avbench.train.loop.train` (or `launch` for `--nproc N`, which starts torchrun's elastic agent).
Under `torchrun` the same command runs once per process; rank/world come from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

train_app = typer.Typer(help="Train the baselines (DDP via torchrun / --nproc / SLURM).", no_args_is_help=True)

# exit status after a preemption checkpoint: 128 + signal, as a shell reports a process killed by it
_PREEMPTED = "stopped by signal {sig}: checkpoint {ckpt} written; rerun the same command (--resume auto) to continue"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.add_typer(train_app, name="train")


def _options(data, out, config, sets, max_steps, batch_size, lr, seed, precision, device, workers, kind):
    from avbench.train.config import load_config

    overrides = list(sets)
    if data is not None:
        overrides.append(f"data.shards={_toml_str(str(data))}")
    for key, value in (("train.max_steps", max_steps), ("data.batch_size", batch_size), ("optim.lr", lr),
                       ("train.seed", seed), ("data.workers", workers)):
        if value is not None:
            overrides.append(f"{key}={value}")
    for key, value in (("train.precision", precision), ("train.device", device)):
        if value is not None:
            overrides.append(f"{key}={_toml_str(value)}")
    cfg = load_config(config, overrides)
    if cfg.kind != kind:
        raise ValueError(f"--config {config} is a {cfg.kind!r} config; use `avbench train {cfg.kind}` or a {kind} config")
    if not cfg.data.shards:
        raise ValueError("no training data: pass --data DIR (a dataset root built by `avbench build`)")
    return cfg


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s)  # a JSON string literal is a valid TOML basic string


def _run(kind: str, data, out, config, sets, resume, nproc, max_steps, batch_size, lr, seed, precision,
         device, workers, progress) -> None:
    from avbench.train.config import ConfigError

    try:
        cfg = _options(data, out, config, sets, max_steps, batch_size, lr, seed, precision, device, workers, kind)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    try:
        if nproc > 1:
            from avbench.train.launch import launch

            result = launch(cfg, out, nproc=nproc, resume=resume, console=progress)
        else:
            from avbench.train.loop import train

            result = train(cfg, out, resume=resume, console=progress).__dict__
    except (ConfigError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    if result.get("preempted"):
        typer.echo(_PREEMPTED.format(sig=result["signal"], ckpt=result["checkpoint"]), err=True)
        raise typer.Exit(code=128 + int(result["signal"] or 15))
    typer.echo(f"trained to step {result['step']}; checkpoint {result['checkpoint']}; sampling checkpoint "
               f"{Path(out) / 'model.pt'} ({result['nonfinite_skipped']} non-finite steps skipped)")


_DATA = typer.Option(None, "--data", help="Dataset root built by `avbench build` (DIR with shards/index.json).")
_OUT = typer.Option(..., "--out", help="Run directory: config.toml, log.jsonl, tb/, checkpoints/, model.pt, previews/.")
_SET = typer.Option([], "--set", help="Override any config value: --set optim.lr=2e-4 --set model.overrides.model_channels=64 (repeatable; TOML values).")
_RESUME = typer.Option("auto", "--resume", help="auto (newest complete checkpoint in --out, else start fresh) | none | PATH.")
_NPROC = typer.Option(1, "--nproc", help="Start N local processes through torchrun's elastic agent (one per GPU). Under torchrun leave it at 1.")
_STEPS = typer.Option(None, "--max-steps", help="Shortcut for --set train.max_steps=N.")
_BS = typer.Option(None, "--batch-size", help="Per-process micro-batch (--set data.batch_size=N).")
_LR = typer.Option(None, "--lr", help="Shortcut for --set optim.lr=X.")
_SEED = typer.Option(None, "--seed", help="Shortcut for --set train.seed=N.")
_PREC = typer.Option(None, "--precision", help="bf16 (default) | fp16 (with a GradScaler) | fp32.")
_DEV = typer.Option(None, "--device", help="auto | cpu | cuda.")
_WORKERS = typer.Option(None, "--workers", help="DataLoader workers per process (--set data.workers=N).")
_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show the rich progress line.")


@train_app.command("baseline")
def baseline(
    data: Optional[Path] = _DATA, out: Path = _OUT,
    config: str = typer.Option("mmdiffusion-64", "--config", help="Config name in avbench/configs (mmdiffusion-64, tiny) or a .toml path."),
    sets: list[str] = _SET, resume: str = _RESUME, nproc: int = _NPROC, max_steps: Optional[int] = _STEPS,
    batch_size: Optional[int] = _BS, lr: Optional[float] = _LR, seed: Optional[int] = _SEED,
    precision: Optional[str] = _PREC, device: Optional[str] = _DEV, workers: Optional[int] = _WORKERS,
    progress: bool = _PROGRESS,
) -> None:
    """Train the coupled MM-UNet (MM-Diffusion baseline) on aligned 16-frame audio-video windows."""
    _run("baseline", data, out, config, sets, resume, nproc, max_steps, batch_size, lr, seed, precision, device,
         workers, progress)


@train_app.command("superres")
def superres(
    data: Optional[Path] = _DATA, out: Path = _OUT,
    config: str = typer.Option("sr-64-256", "--config", help="Config name in avbench/configs (sr-64-256, tiny-sr) or a .toml path."),
    sets: list[str] = _SET, resume: str = _RESUME, nproc: int = _NPROC, max_steps: Optional[int] = _STEPS,
    batch_size: Optional[int] = _BS, lr: Optional[float] = _LR, seed: Optional[int] = _SEED,
    precision: Optional[str] = _PREC, device: Optional[str] = _DEV, workers: Optional[int] = _WORKERS,
    progress: bool = _PROGRESS,
) -> None:
    """Train the 64→256 super-resolution U-Net per frame (low resolution = area-downscaled 256 px frames)."""
    _run("superres", data, out, config, sets, resume, nproc, max_steps, batch_size, lr, seed, precision, device,
         workers, progress)
