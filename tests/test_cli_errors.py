"""One error hierarchy, honest exit codes: AvbenchError → one red line and its code; bugs keep tracebacks.

Exit codes (avbench/errors.py): 0 ok, 1 finished with failures / nothing built, 2 bad input,
3 transient failures remain, 128+N stopped by signal N.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from avbench.cli import app
from avbench.commands.options import build_command
from avbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_TRANSIENT, TrainError
from support.fetchkit import url_spec
from support.httpserver import FaultServer

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def test_avbench_error_is_one_line_with_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["train", "baseline", "--out", str(tmp_path / "run")])  # no --data
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    assert "no training data" in _one_error_line(res.output)
    res = CliRunner().invoke(app, ["resolve", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "l.csv")])
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    assert "nope.toml" in _one_error_line(res.output)


def test_the_error_chooses_the_exit_code():
    def fails() -> None:
        raise TrainError("the loss went non-finite 20 steps in a row")

    one = typer.Typer()
    one.command()(build_command(fails))
    res = CliRunner().invoke(one, [])
    assert res.exit_code == EXIT_FAILED == TrainError.exit_code
    assert _one_error_line(res.output) == "error: the loss went non-finite 20 steps in a row"


def test_a_bug_keeps_its_traceback(tmp_path):
    # `eval` used to catch RuntimeError, so a real bug became one red line and exit 2
    code = (
        "import sys\n"
        "import avbench.metrics.evaluate as ev\n"
        "def broken(cfg, progress=None):\n"
        "    raise RuntimeError('boom: a bug, not bad input')\n"
        "ev.run_eval = broken\n"
        "from avbench.cli import main\n"
        f"sys.argv = ['avbench', 'eval', '--samples', {str(tmp_path)!r}, '--fvd']\n"
        "main()\n"
    )
    env = {"_TYPER_STANDARD_TRACEBACK": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=env)
    assert res.returncode == 1, res.stderr
    assert "Traceback (most recent call last)" in res.stderr
    assert "RuntimeError: boom: a bug, not bad input" in res.stderr
    assert not any(line.startswith("error:") for line in res.stderr.splitlines())


def test_build_where_every_source_failed_exits_1(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are meeting notes, not a video\n" * 50)
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "allbad"\ndescription = "every source fails"\ntarget_hours = 0.01\n'
                    '[[sources]]\nkind = "file"\npaths = ["notes.mp4"]\n')
    res = CliRunner().invoke(app, ["build", str(spec), "--root", str(tmp_path / "root"), "--workers", "1",
                                   "--no-progress"])
    assert res.exit_code == EXIT_FAILED, res.output
    assert "1 source(s) failed" in res.output


def test_download_with_transient_failures_exits_3(tmp_path):
    with FaultServer() as srv:
        srv.add("/busy.mp4", b"not served: always 429", fault="429")
        spec = url_spec(tmp_path / "spec.toml", [srv.url("/busy.mp4")])
        res = CliRunner().invoke(app, ["download", str(spec), "--root", str(tmp_path / "root"), "--retries", "0",
                                       "--backoff", "0", "--no-progress"])
    assert res.exit_code == EXIT_TRANSIENT, res.output
