"""`avbench report RUN` on a real tiny training run (3 steps on the demo shards, one preview): the page
renders in headless Chromium with every plot and preview frame decoded and the preview video readable,
its bytes are the same on a second report, and previews come in step/sample order."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from support.browser import assert_rendered, render, require_browser
from typer.testing import CliRunner

from avbench.cli import app
from avbench.train.logging import read_log

FAST = ["data.frames=4", "data.batch_size=2", "model.overrides.model_channels=8", "data.workers=0",
        "log.tensorboard=false", "log.every=1", "log.preview_every=3", "log.preview_sampler_steps=2",
        "checkpoint.every=100"]


@pytest.fixture(scope="module")
def tiny_run(demo_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("report-run") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine: one thread is the fastest (see one_thread)
    try:
        args = ["train", "baseline", "--data", str(demo_dataset), "--config", "tiny", "--out", str(run),
                "--max-steps", "3", "--no-progress", *(a for s in FAST for a in ("--set", s))]
        res = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(before)
    assert res.exit_code == 0, res.output
    return run


def _report(*args):
    return CliRunner().invoke(app, ["report", *map(str, args)])


def test_run_report_renders_curves_and_preview_in_chromium(tiny_run, tmp_path):
    require_browser()
    out = tmp_path / "report"
    res = _report(tiny_run, "--out", out)
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text(encoding="utf-8")
    # every curve the loop logs on a CPU run has its plot; memory is logged on CUDA only, and says so
    for plot in ("loss", "quartiles", "grad_norm", "lr", "samples_per_s", "data_wait"):
        assert f'src="plots/{plot}.png"' in html, plot
    assert "gpu_mem_gb on CUDA devices only" in html
    assert {r["step"] for r in read_log(tiny_run)} == {1, 2, 3}
    assert 'src="previews/step-00000003-0.mp4"' in html and 'src="previews/step-00000003-0.png"' in html

    shot = tmp_path / "run-report.png"
    facts = render(out / "index.html", shot)
    assert_rendered(facts, shot)
    assert facts["title"] == f"Training run {tiny_run.name}"
    assert facts["images"] == 7  # six plots and the preview's first frame
    assert [m["tag"] for m in facts["media"]] == ["video"]
    assert facts["media"][0]["ready_state"] >= 1, facts["media"]


def test_run_report_default_location_and_same_bytes_twice(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert _report(run).exit_code == 0
    first = {p.relative_to(run / "report"): p.read_bytes() for p in sorted((run / "report").rglob("*")) if p.is_file()}
    shutil.rmtree(run / "report")
    assert _report(run).exit_code == 0
    second = {p.relative_to(run / "report"): p.read_bytes() for p in sorted((run / "report").rglob("*")) if p.is_file()}
    assert first.keys() == second.keys() and len(first) == 1 + 6 + 2
    assert [k for k in first if first[k] != second[k]] == []


def test_previews_are_in_step_then_sample_order(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    real = run / "previews" / "step-00000003-0.mp4"
    # file-name order would put sample 10 before sample 2, and step 20 before step 3
    for name in ("step-00000003-10.mp4", "step-00000003-2.mp4", "step-00000020-0.mp4"):
        shutil.copyfile(real, run / "previews" / name)
    assert _report(run, "--out", tmp_path / "out").exit_code == 0
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    order = re.findall(r'<source src="previews/([^"]+)"', html)
    assert order == ["step-00000003-0.mp4", "step-00000003-2.mp4", "step-00000003-10.mp4", "step-00000020-0.mp4"]


def test_crashed_run_with_a_cut_off_last_line_still_reports(tiny_run, tmp_path):
    from avbench.report.run import RunReportError, run_report

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    log = run / "log.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    last_train = max(i for i, line in enumerate(lines) if '"type": "train"' in line)
    log.write_text("".join(lines[:last_train + 1]) + lines[last_train + 1][:25], encoding="utf-8")  # killed mid-write
    html = run_report(run).read_text(encoding="utf-8")
    assert "The last line of log.jsonl is incomplete" in html and "<th>step 3</th>" in html

    log.write_text("".join(lines[:1]) + lines[1][:25] + "\n" + "".join(lines[2:]), encoding="utf-8")
    with pytest.raises(RunReportError, match=r"log\.jsonl: line 2 is not JSON"):
        run_report(run)


def test_run_without_log_is_refused_with_the_file_named(tmp_path):
    from avbench.report.run import RunReportError, run_report

    with pytest.raises(RunReportError, match=r"log\.jsonl: missing"):
        run_report(tmp_path)
