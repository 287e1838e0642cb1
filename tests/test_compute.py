"""One spelling of precisions and devices for every command (avbench/compute.py)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from avbench import compute
from avbench.cli import app
from avbench.errors import ConfigError, SampleError


def test_precision_names_map_to_dtypes_and_others_are_one_line():
    assert [compute.torch_dtype(n) for n in compute.PRECISIONS] == [torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(SampleError, match=r"^--audio-dtype float16: choose one of fp32 \| bf16 \| fp16$"):
        compute.torch_dtype("float16", "--audio-dtype", SampleError)
    assert compute.resolve_precision(None, "cuda:1", on_cuda="bf16") == "bf16"
    assert compute.resolve_precision(None, "cpu", on_cuda="bf16") == "fp32"


def test_auto_is_the_gpu_where_there_is_one_and_an_absent_gpu_is_one_line():
    assert compute.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert compute.resolve_device("cpu") == "cpu" and compute.check_device("cpu") == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match=r"^--device cuda:1: no CUDA device here; pass --device cpu \(or auto\)$"):
        compute.check_device("cuda:1")


def test_a_config_that_refuses_a_value_when_built_gives_one_cli_line(tmp_path):
    # EncodeConfig checks --dtype in __post_init__, i.e. while the command builds it
    res = CliRunner().invoke(app, ["encode", str(tmp_path), "--dtype", "float32"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == "error: --dtype float32: choose one of fp32 | bf16 | fp16"
