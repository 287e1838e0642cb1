"""The package layers hold (import-linter contract in pyproject.toml), and `avbench --help` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "av", "yt_dlp", "transformers")


def test_import_layers_contract_is_kept():
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom avbench.cli import main\nsys.argv = ['avbench', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "train" in res.stdout and "sample" in res.stdout  # the help listed the commands
    assert res.stdout.strip().splitlines()[-1] == "HEAVY []", res.stdout[-400:]
