"""The `avbench` command line.

Thin on purpose: every command lives in `avbench/commands/<area>.py`, which exposes `register(app)`.
Command modules import heavy libraries (torch, av, yt-dlp) inside the command functions so that
`avbench --help` stays fast.
"""

from __future__ import annotations

import typer

from avbench.commands import curate_fetch, curate_process, evaluate, sample, train

app = typer.Typer(
    name="avbench",
    help="Audio-video generation research: build datasets, train baselines, sample, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)



@app.callback()
def _root() -> None:
    """Audio-video generation research: build datasets, train baselines, sample, evaluate."""


for _module in (curate_fetch, curate_process, evaluate, sample, train):
    _module.register(app)


@app.command()
def version() -> None:
    """Print the avbench version and the versions of the libraries that shape its outputs."""
    import importlib.metadata as md

    from avbench import __version__

    typer.echo(f"avbench {__version__}")
    for dist in ("torch", "av", "yt-dlp", "scenedetect-headless", "webdataset", "numpy", "scipy"):
        try:
            typer.echo(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            typer.echo(f"{dist} (not installed)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
