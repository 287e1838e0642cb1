"""CLI commands of this area. Each command is a thin wrapper: parse options, build one config object, call one function."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
