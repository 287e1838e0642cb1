"""`avbench verify ROOT`: check a built dataset's shards against its index before trusting them."""

from __future__ import annotations

from pathlib import Path

import typer

from avbench.errors import EXIT_FAILED, EXIT_OK, DataError


def verify_cmd(
    root: Path = typer.Argument(..., help="Dataset root (the folder holding shards/index.json)."),
) -> None:
    """Check every shard listed in ROOT/shards/index.json: inside ROOT/shards/, present, size and sha256;
    and, where `avbench encode` wrote them, every latent shard listed in ROOT/latents/<vae>/<size>/index.json.

    Exit code: 0 every shard matches, 1 problems found (one line each), 2 ROOT is not a dataset root.
    """
    from avbench.dataset_index import latent_sets, load_index, verify_latent_set, verify_root

    rows = load_index(root)["shards"]  # not a dataset root / unusable index: one line, exit 2
    problems = verify_root(root)
    summary = [f"{len(rows)} shard(s), {sum(r['bytes'] for r in rows)} bytes (shards/index.json)"]
    checked = len(rows)
    for vae, size in latent_sets(root):
        try:
            latent_rows, latent_problems = verify_latent_set(root, vae, size)
        except DataError as e:  # an unusable latent index is damage in this root, not a wrong ROOT
            problems.append(str(e))
            continue
        problems += latent_problems
        checked += len(latent_rows)
        summary.append(f"{len(latent_rows)} latent shard(s), {sum(r['bytes'] for r in latent_rows)} bytes "
                       f"(latents/{vae}/{size}/index.json)")
    for line in problems:
        typer.secho(line, fg=typer.colors.RED, err=True)
    if problems:
        typer.echo(f"verify: {len(problems)} of {checked} shard(s) have problems ({root})")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"verify: {'; '.join(summary)}, all match their index ({root})")
    raise typer.Exit(EXIT_OK)
