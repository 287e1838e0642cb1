"""`avbench verify ROOT`: check a built dataset's shards against its index before trusting them."""

from __future__ import annotations

from pathlib import Path

import typer

from avbench.errors import EXIT_FAILED, EXIT_OK


def verify_cmd(
    root: Path = typer.Argument(..., help="Dataset root (the folder holding shards/index.json)."),
) -> None:
    """Check every shard listed in ROOT/shards/index.json: inside ROOT/shards/, present, size and sha256.

    Exit code: 0 every shard matches, 1 problems found (one line each), 2 ROOT is not a dataset root.
    """
    from avbench.dataset_index import load_index, verify_root

    rows = load_index(root)["shards"]  # not a dataset root / unusable index: one line, exit 2
    problems = verify_root(root)
    for line in problems:
        typer.secho(line, fg=typer.colors.RED, err=True)
    total = sum(r["bytes"] for r in rows)
    if problems:
        typer.echo(f"verify: {len(problems)} of {len(rows)} shard(s) have problems ({root})")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"verify: {len(rows)} shard(s), {total} bytes, all match shards/index.json ({root})")
    raise typer.Exit(EXIT_OK)
