"""The `avbench` command line.

Thin on purpose: every command is a function in `avbench/commands/<area>.py` whose options are generated
from the config dataclass it fills (commands/options.py). `COMMANDS` is the whole command list; each
entry is built into a click command only when it runs, so `avbench --help` imports neither the library
modules nor torch, av or yt-dlp.
"""

from __future__ import annotations

import importlib.metadata as md

import typer

from avbench import __version__
from avbench.commands import curate_fetch, curate_process, encode, evaluate, report, sample, train, verify
from avbench.commands.options import lazy_group


def version() -> None:
    """Print the avbench version and the versions of the libraries that shape its outputs."""
    typer.echo(f"avbench {__version__}")
    for dist in ("torch", "av", "yt-dlp", "scenedetect-headless", "webdataset", "numpy", "scipy"):
        try:
            typer.echo(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            typer.echo(f"{dist} (not installed)")


COMMANDS = {
    "resolve": curate_fetch.resolve_cmd,
    "download": curate_fetch.download_cmd,
    "info": curate_fetch.info_cmd,
    "scene-cut": curate_process.scene_cut_cmd,
    "resample": curate_process.resample_cmd,
    "shard": curate_process.shard_cmd,
    "build": curate_process.build_cmd,
    "verify": verify.verify_cmd,
    "eval": evaluate.eval_command,
    "leaderboard": evaluate.LEADERBOARD,
    "weights": evaluate.WEIGHTS,
    "sample": sample.GROUP,
    "train": train.GROUP,
    "encode": encode.encode_cmd,
    "report": report.report_cmd,
    "version": version,
}

app = typer.Typer(
    name="avbench",
    cls=lazy_group(COMMANDS),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # as the commands (commands/options.py): plain help, no markup
)


@app.callback()
def _root() -> None:
    """Audio-video generation research: build datasets, train baselines, sample, evaluate."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
