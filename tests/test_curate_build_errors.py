"""`avbench build` on a spec whose sources cannot be pinned fails with one clear line, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: connections are refused


def test_unreachable_hub_is_one_line_error(tmp_path):
    spec = tmp_path / "hub.toml"
    spec.write_text('name = "hub"\ndescription = "hub listing"\ntarget_hours = 1.0\n'
                    '[[sources]]\nkind = "hf"\nrepo = "someone/some-dataset"\n')
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    res = subprocess.run([sys.executable, "-m", "avbench", "build", str(spec), "--root", str(tmp_path / "root"),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("error:") and "could not be resolved" in first
    assert not (tmp_path / "root" / "lock.csv").exists()  # a partial lock would pin a smaller dataset


def test_stages_refuse_a_root_without_downloads(tmp_path):
    from typer.testing import CliRunner

    from avbench.cli import app

    missing = tmp_path / "typo"
    for stage in ("scene-cut", "resample", "shard"):
        res = CliRunner().invoke(app, [stage, "demo", "--root", str(missing)])
        assert res.exit_code == 2, (stage, res.output)
        assert "no download records" in res.output and "avbench download demo" in res.output
    assert not missing.exists()  # nothing written into a mistyped root
