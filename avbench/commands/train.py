"""`avbench train baseline|superres|latent`: train the MM-UNet, the 64→256 super-resolution U-Net, or the
MM-UNet on codec latents (the latent shards of `avbench encode`).

All three commands are one definition (`train_command`) that differ only in the kind and the default
`--config`. Each builds one `TrainConfig` (a named TOML config + `--set` overrides + shortcut options,
generated from the TrainConfig fields they set) and calls `avbench.train.loop.train` (or `launch` for
`--nproc N`, which starts torchrun's elastic agent). Under `torchrun` the same command runs once per
process; rank/world come from the environment.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Optional

import typer

from avbench.commands.options import Group, Overrides
from avbench.errors import ConfigError

# exit status after a preemption checkpoint: 128 + signal, as a shell reports a process killed by it
_PREEMPTED = "stopped by signal {sig}: checkpoint {ckpt} written; rerun the same command (--resume auto) to continue"

# option → TrainConfig key it sets (help and the shown default come from that field)
SHORTCUTS = {"max_steps": "train.max_steps", "batch_size": "data.batch_size", "lr": "optim.lr",
             "seed": "train.seed", "precision": "train.precision", "device": "train.device",
             "workers": "data.workers"}

KINDS = {  # command → (model kind it trains, default --config, the other config of that kind, help)
    "baseline": ("mmunet", "mmdiffusion-64", "tiny",
                 "Train the coupled MM-UNet (MM-Diffusion baseline) on aligned 16-frame audio-video windows."),
    "superres": ("superres", "sr-64-256", "tiny-sr",
                 "Train the 64→256 super-resolution U-Net per frame (low resolution = area-downscaled 256 px frames)."),
    "latent": ("latent", "latent-sd-mmaudio16k-256", "tiny-latent",
               "Train the MM-UNet on video/audio VAE latents (ROOT/latents/<vae>/<size>, from `avbench encode`)."),
}


def _toml_value(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)  # a JSON string is a TOML basic string


def load_train_config(command: str, config: str, data: Path | None, sets: list[str], shortcuts: dict):
    """The resolved TrainConfig: the --config file, then --set, then the shortcut options and --data."""
    from avbench.train.config import load_config

    overrides = list(sets) + [f"{key}={_toml_value(v)}" for key, v in shortcuts.items()]
    if data is not None:
        overrides.append(f"data.shards={_toml_value(str(data))}")
    cfg = load_config(config, overrides)
    kind = KINDS[command][0]
    if cfg.kind != kind:
        right = next((c for c, spec in KINDS.items() if spec[0] == cfg.kind), None)
        raise ConfigError(f"--config {config} is a {cfg.kind!r} config: use `avbench train {right}`, or a {kind} "
                          f"config such as {KINDS[command][1]}")
    if not cfg.data.shards:
        raise ConfigError("no training data: pass --data DIR (a dataset root built by `avbench build`)")
    return cfg


def train_command(
    command: str,
    data: Optional[Path] = typer.Option(
        None, "--data", help="Dataset root built by `avbench build` (DIR with shards/index.json)."),
    out: Path = typer.Option(
        ..., "--out", help="Run directory: config.toml, log.jsonl, tb/, checkpoints/, model.pt, previews/."),
    config: str = typer.Option(..., "--config", help="Config name in avbench/configs or a .toml path."),
    sets: list[str] = typer.Option([], "--set", help="Override any config value: --set optim.lr=2e-4 "
                                   "--set model.overrides.model_channels=64 (repeatable; TOML values)."),
    resume: str = typer.Option(
        "auto", "--resume", help="auto (newest readable checkpoint in --out; refuses if all are damaged; fresh if there is none) "
        "| none (fresh start, overwrites) | PATH."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Start N local processes through torchrun's elastic agent "
                              "(one per GPU). Under torchrun leave it at 1."),
    shortcuts=Overrides("avbench.train.config:TrainConfig", SHORTCUTS),
    progress: bool = typer.Option(True, "--progress/--no-progress", metavar="", help="Show the rich progress line."),
) -> None:
    cfg = load_train_config(command, config, data, sets, shortcuts)
    if nproc > 1:
        from avbench.train.launch import launch

        result = launch(cfg, out, nproc=nproc, resume=resume, console=progress)
    else:
        from avbench.train.loop import train

        result = train(cfg, out, resume=resume, console=progress).__dict__
    if result.get("preempted"):
        typer.echo(_PREEMPTED.format(sig=result["signal"], ckpt=result["checkpoint"]), err=True)
        raise typer.Exit(code=128 + int(result["signal"] or 15))
    typer.echo(f"trained to step {result['step']}; checkpoint {result['checkpoint']}; sampling checkpoint "
               f"{Path(out) / 'model.pt'} ({result['nonfinite_skipped']} non-finite steps skipped, "
               f"{result.get('overflow_skipped', 0)} fp16 overflow steps skipped)")


def _for(command: str):
    """`train_command` for one kind, with that kind's default --config: one signature for both kinds."""
    _, default_config, other, doc = KINDS[command]
    sig = inspect.signature(train_command, eval_str=True)
    option = copy.copy(sig.parameters["config"].default)
    option.default = default_config
    option.help = f"Config name in avbench/configs ({default_config}, {other}) or a .toml path."
    params = [p.replace(default=option) if name == "config" else p for name, p in sig.parameters.items()
              if name != "command"]

    def run(**options):
        return train_command(command, **options)

    run.__doc__ = doc
    run.__signature__ = sig.replace(parameters=params)
    return run


GROUP = Group("Train the baselines (DDP via torchrun / --nproc / SLURM).", {c: _for(c) for c in KINDS})
