"""Where a command computes and at what precision: the project's one spelling for both.

Precisions are `fp32 | bf16 | fp16` everywhere (`train --precision`, `encode --dtype`, `sample text2av
--dtype`, MMAudio's `--audio-dtype`). Devices are `auto | cpu | cuda | cuda:N`; `auto` is CUDA when torch
sees a GPU, else the CPU, and is the default of every command that runs a model, so the same command line
uses the GPU where there is one. torch is imported inside the functions: command configs use this module
and must stay light for `--help`.
"""

from __future__ import annotations

from typing import Any

from avbench.errors import AvbenchError, ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_HELP = "auto (CUDA when there is a GPU, else the CPU) | cpu | cuda | cuda:N"


def torch_dtype(name: str, flag: str = "--dtype", error: type[AvbenchError] = ConfigError) -> Any:
    """The torch dtype of a precision name; a name outside PRECISIONS is one line naming the flag."""
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise error(f"{flag} {name}: choose one of {' | '.join(PRECISIONS)}")
    return table[name]


def check_precision(name: str, flag: str = "--dtype", error: type[AvbenchError] = ConfigError) -> str:
    """`name` if it is one of PRECISIONS (torch-free, for config validation)."""
    if name not in PRECISIONS:
        raise error(f"{flag} {name}: choose one of {' | '.join(PRECISIONS)}")
    return name


def resolve_device(device: str) -> str:
    """`auto` → `cuda` when torch sees a GPU, else `cpu`; any other name as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_device(device: str, flag: str = "--device", error: type[AvbenchError] = ConfigError) -> str:
    """A resolved device that can run here: an explicit CUDA device on a machine without one is one line
    (checked when models load, so a config naming cuda can still be built and inspected anywhere)."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise error(f"{flag} {device}: no CUDA device here; pass {flag} cpu (or auto)")
    return device


def resolve_precision(given: str | None, device: str, on_cuda: str) -> str:
    """A precision flag's value, or its default: `on_cuda` on a CUDA device, fp32 on the CPU (where half
    precision is slow or unsupported)."""
    if given is not None:
        return given
    return on_cuda if str(device).startswith("cuda") else "fp32"
