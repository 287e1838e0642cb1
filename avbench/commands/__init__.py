"""CLI command modules, one per area; `avbench/cli.py` lists their command functions in `COMMANDS`.

Command modules import the library inside the command functions, not at the top: cli.py imports every
command module to list the commands, and `avbench --help` must not import torch, PyAV or yt-dlp.
Options come from the config dataclasses through `options.Config` (see docs/cli.md).
"""
