"""`avbench encode ROOT --vae NAME --size S`: pixel shards → latent shards (the latent baseline's data)."""

from __future__ import annotations

import typer

from avbench.commands.options import Config
from avbench.errors import EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT


def encode_cmd(cfg=Config("avbench.encode.config:EncodeConfig", arguments=("root",),
                          flags={"splits": "--split"})) -> None:
    """Encode a dataset's pixel shards with a pretrained video + audio VAE into latent shards; resumable.

    Writes ROOT/latents/<vae>/<size>/<split>/*.tar (float16 .npy latents, posterior mean, + each clip's
    json) and index.json once every shard is done. Shards already encoded with the same codec are
    skipped. Exit code: 0 ok, 1 some shards failed (see ROOT/failures/encode/), 2 bad input or missing
    weights (one line per missing VAE), 3 only transient failures.
    """
    from avbench.encode.stage import encode_root

    summary = encode_root(cfg)
    for source_id, reason in sorted(summary.stage.failures.items()):
        typer.secho(f"failed {source_id}: {reason}", fg=typer.colors.RED, err=True)
    for line in summary.lines():
        typer.echo(line)
    if summary.stage.transient:
        raise typer.Exit(EXIT_TRANSIENT)
    raise typer.Exit(EXIT_FAILED if summary.stage.failed else EXIT_OK)
