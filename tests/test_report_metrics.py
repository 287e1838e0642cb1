"""`avbench report` on metrics results made by real quick `avbench eval` runs (weight-free AV-Align, with and
without a track, and a bootstrapped FAD on seeded random VGGish weights): the leaderboard tables carry the
protocol of each column and the intervals, the gallery shows samples beside reference windows, a
memorisation contact sheet next to a record is shown, and the page renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from support.browser import assert_rendered, render, require_browser
from support.evalkit import make_clip, make_sample_folder, track_toml
from typer.testing import CliRunner

from avbench.cli import app
from avbench.metrics.contact_sheet import SheetRow, thumbnails, write_contact_sheet


def _cli(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def results(demo_dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("report-metrics")
    samples = make_sample_folder(base / "gen", 4, "a")
    track = base / "avsync-64.toml"
    track.write_text(track_toml("avsync-64", "AV-Align only (weight-free) on the test demo build"))
    results = base / "results"
    mp = pytest.MonkeyPatch()
    mp.setenv("AVBENCH_CACHE", str(base / "cache"))
    try:
        for args in (["--av-align", "--name", "plain"],
                     ["--track", track, "--reference", demo_dataset, "--name", "tracked"],
                     ["--fad", "--allow-random-vggish", "--allow-small", "--bootstrap", "20", "--num-clips", "4",
                      "--reference", f"{demo_dataset}:test", "--name", "fad"]):
            res = _cli("eval", "--samples", samples, "--results-dir", results, "--workers", "0", *args)
            assert res.exit_code == 0, res.output
    finally:
        mp.undo()
    return results


def test_metrics_report_renders_tables_intervals_and_gallery_in_chromium(results, tmp_path):
    require_browser()
    out = tmp_path / "report"
    res = _cli("report", results, "--out", out)
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text(encoding="utf-8")
    fad = json.loads((results / "fad.json").read_text())
    lo, hi = fad["protocols"]["fad"]["ci95"]
    # one table for the track, one for the untracked protocol; score columns carry the protocol
    assert "Track avsync-64 · protocol avbench" in html and "No track · protocol avbench" in html
    assert "<th>av_align (avbench)</th>" in html and "<th>fad (avbench)</th>" in html
    assert f"{fad['scores']['fad']:.6g} [{lo:.4g}, {hi:.4g}]" in html
    assert "profile vggish" in html and "random_weights True" in html  # the column's protocol, per row set
    # gallery: the shared sample folder and reference split are decoded once each
    gallery = sorted(p.name for p in (out / "gallery").iterdir())
    assert len(gallery) == 8, gallery
    assert html.count("<figcaption>reference synth-") == 2 * 4  # the tracked and the fad record's reference

    shot = tmp_path / "metrics-report.png"
    facts = render(out / "index.html", shot)
    assert_rendered(facts, shot)
    assert facts["title"] == "Evaluation results: results"
    assert facts["images"] == 3 * 4 + 2 * 4


def test_metrics_report_of_one_record_with_memorisation_sheet(results, tmp_path):
    require_browser()
    folder = tmp_path / "results"
    shutil.copytree(results, folder, ignore=shutil.ignore_patterns("report"))
    # `eval --memorisation` needs the I3D/VGGish weights; the sheet is drawn here by the same writer, from
    # the synthetic clips, under the name eval gives it (the report only shows the PNG beside the record)
    rows = [SheetRow(f"{i}", thumbnails(make_clip(i, "a")[0], 32), f"t{i}", thumbnails(make_clip(i, "b")[0], 32),
                     "drawn by the test: no distance computed") for i in range(2)]
    write_contact_sheet(folder / "plain.memorisation.png", rows, 32)
    res = _cli("report", folder / "plain.json")
    assert res.exit_code == 0, res.output
    index = folder / "report" / "plain" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert 'src="memorisation/r0.png"' in html and (index.parent / "memorisation" / "r0.png").read_bytes() == \
        (folder / "plain.memorisation.png").read_bytes()
    assert "tracked" not in re.sub(r"<p>.*?</p>", "", html)  # only the record asked for
    shot = tmp_path / "record.png"
    facts = render(index, shot)
    assert_rendered(facts, shot)
    assert facts["images"] == 4 + 1


def test_metrics_report_same_bytes_and_missing_samples_said(results, tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(results, folder, ignore=shutil.ignore_patterns("report"))
    for n in (1, 2):
        assert _cli("report", folder, "--out", tmp_path / f"r{n}").exit_code == 0
    files = sorted(p.relative_to(tmp_path / "r1") for p in (tmp_path / "r1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "r2") for p in (tmp_path / "r2").rglob("*") if p.is_file())
    assert all((tmp_path / "r1" / f).read_bytes() == (tmp_path / "r2" / f).read_bytes() for f in files)

    rec = json.loads((folder / "plain.json").read_text())
    rec["samples"]["path"] = str(tmp_path / "deleted-samples")
    (folder / "plain.json").write_text(json.dumps(rec))
    assert _cli("report", folder, "--out", tmp_path / "r3").exit_code == 0
    html = (tmp_path / "r3" / "index.html").read_text(encoding="utf-8")
    assert f"generated: {tmp_path / 'deleted-samples'}: not readable any more" in html


def test_not_a_record_is_refused_with_the_file_named(tmp_path):
    from avbench.report.metrics import MetricsReportError, metrics_report

    (tmp_path / "x.json").write_text('{"name": "x"}')
    with pytest.raises(MetricsReportError, match=r"x\.json: no 'scores'"):
        metrics_report(tmp_path / "x.json")
