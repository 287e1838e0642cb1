"""The package layers hold (import-linter contract in pyproject.toml), and `avbench --help` stays light."""

from __future__ import annotations

import subprocess

import pytest
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "av", "yt_dlp", "transformers", "diffusers")


def test_import_layers_contract_is_kept():
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


# `avbench --help` imports none of the heavy libraries; a command's own help may read its config module
# (PyAV is light next to torch) but not torch. `sample --help` still imports torch: SampleConfig's help
# strings come from the sampler registry, which lives beside the samplers.
@pytest.mark.parametrize("argv, heavy", [(["--help"], HEAVY), (["eval", "--help"], ("torch", "transformers")),
                                         (["train", "baseline", "--help"], ("torch", "transformers"))])
def test_help_imports_no_heavy_library(argv, heavy):
    code = (f"import sys\nfrom avbench.cli import main\nsys.argv = ['avbench', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout and ("--" in res.stdout or "train" in res.stdout)  # a help page was printed
    assert res.stdout.strip().splitlines()[-1] == "HEAVY []", res.stdout[-400:]
