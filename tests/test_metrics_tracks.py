"""Benchmark tracks: the shipped files, their validation, and `avbench eval --track` end to end."""

import csv
import hashlib
import io
import json
import shutil
import tarfile

import pytest
from support.evalkit import make_sample_folder, track_toml
from typer.testing import CliRunner

from avbench.cli import app
from avbench.metrics.evaluate import METRIC_FLAGS, EvalConfig
from avbench.metrics.sources import parse_source, reference_fingerprint
from avbench.metrics.tracks import TASKS, TrackError, benchmarks_dir, load_track
from avbench.paths import resolve_manifest


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_sample_folder(tmp_path_factory.mktemp("track-samples") / "gen", 4, "a")


def _eval(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def _names(tar_path) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return tar.getnames()


def _first_test_keys(root, n: int) -> list[tuple[str, int]]:
    """The first n test clips at 64 px in shard-index order, window at frame 0 (read from the tars directly)."""
    index = json.loads((root / "shards" / "index.json").read_text())
    keys = []
    for row in index["shards"]:
        if row["split"] == "test" and row["size"] == 64:
            with tarfile.open(root / "shards" / row["path"]) as tar:
                keys += [(m.name.split(".")[0], 0) for m in tar.getmembers() if m.name.endswith(".mp4")]
    return keys[:n]


def test_shipped_tracks_cover_both_datasets_sizes_and_tasks():
    tracks = {p.stem: load_track(str(p), METRIC_FLAGS) for p in sorted(benchmarks_dir().glob("*.toml"))}
    for ds in ("concerts", "callofduty"):
        for size in (64, 256):
            got = {tracks[n].task for n in (f"{ds}-{size}", f"{ds}-{size}-a2v", f"{ds}-{size}-v2a")}
            assert got == {"unconditional", "audio-to-video", "video-to-audio"}
            assert all(tracks[n].size == size and tracks[n].spec == ds for n in tracks if n.startswith(f"{ds}-{size}"))
    assert "demo-64" in tracks and tracks["demo-64"].allow_small
    for name, t in tracks.items():
        assert t.sha256 == hashlib.sha256(t.path.read_bytes()).hexdigest()
        assert resolve_manifest(t.spec).is_file() and t.task in TASKS
        assert t.clip_count == (4 if name == "demo-64" else 2048) and not (t.allow_small and name != "demo-64")
        if t.task == "audio-to-video":
            assert "fad" not in t.metrics and "fvd" in t.metrics  # the audio is given: only video is scored
        if t.task == "video-to-audio":
            assert "fvd" not in t.metrics and "fad" in t.metrics


@pytest.mark.parametrize("edit,message", [
    (lambda t: t + 'clips = 3\n', "unknown key 'clips'"),
    (lambda t: t.replace('seed = 0\n', ''), "missing required key 'seed'"),
    (lambda t: t.replace('size = 64', 'size = "64"'), "key 'size' must be an int"),
    (lambda t: t.replace('"unconditional"', '"image-to-video"'), "key 'task' must be one of unconditional"),
    (lambda t: t.replace('"avbench"', '"fid"'), "key 'protocol' must be one of avbench"),
    (lambda t: t.replace('"avbench"', '"mmdiffusion"'), "key 'split' is 'test' but protocol 'mmdiffusion'"),
    (lambda t: t.replace('["av_align"]', '["fvd", "psnr"]'), "unknown metric 'psnr'"),
    (lambda t: t.replace('name = "t1"', 'name = "other"'), "key 'name' is 'other' but the file is t1.toml"),
    (lambda t: t + 'lock = "nowhere/demo.lock.csv"\n', "key 'lock' names 'nowhere/demo.lock.csv'"),
    (lambda t: t + 'fvd_profile = "tf"\n', None),
    (lambda t: t.replace('"avbench"', '"styleganv"') + 'fvd_profile = "tf"\n', "fixes 'styleganv'"),
    (lambda t: t + "[extra]\n", "unknown key 'extra'"),
])
def test_track_validation_names_file_and_key(tmp_path, edit, message):
    path = tmp_path / "t1.toml"
    path.write_text(edit(track_toml("t1")))
    if message is None:
        assert load_track(str(path), METRIC_FLAGS).fvd_profile == "tf"
        return
    with pytest.raises(TrackError) as exc:
        load_track(str(path), METRIC_FLAGS)
    text = str(exc.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_unknown_track_name_lists_the_shipped_ones():
    with pytest.raises(TrackError, match="choose from .*demo-64"):
        load_track("no-such-track")


def test_metric_flags_are_eval_options():
    fields = {f.name: f for f in EvalConfig.__dataclass_fields__.values()}
    assert all(fields[m].type in (bool, "bool") for m in METRIC_FLAGS)


def _write_track(dirpath, name, **changes):
    text = track_toml(name)
    for k, v in changes.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{k} =")) + f"\n{k} = {v}\n"
    path = dirpath / f"{name}.toml"
    path.write_text(text)
    return path


def test_track_eval_records_track_protocol_fingerprint_and_export_flags_another_reference(
        demo_dataset, samples, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    track = _write_track(tmp_path, "avsync-64")  # AV-Align only: weight-free, seconds on a CPU
    results = tmp_path / "results"
    res = _eval("--track", track, "--samples", samples, "--reference", demo_dataset, "--results-dir", results,
                "--name", "a")
    assert res.exit_code == 0, res.output
    rec = json.loads((results / "a.json").read_text())
    assert rec["track"]["name"] == "avsync-64" and rec["track"]["sha256"] == hashlib.sha256(track.read_bytes()).hexdigest()
    assert rec["track"]["reference_root_from"] == "--reference" and rec["track"]["spec_match"] is False
    assert any("not the track's 'demo'" in w for w in rec["warnings"])
    assert rec["protocol"]["name"] == "avbench" and rec["protocol"]["num_clips"] == 3
    assert rec["reference"]["split"] == "test" and rec["reference"]["size"] == 64
    assert set(rec["scores"]) == {"av_align"} and rec["counts"]["generated_clips"] == 3
    src = parse_source(f"{demo_dataset}:test:64")
    assert rec["reference_fingerprint"] == reference_fingerprint(src, _first_test_keys(demo_dataset, 3))

    # the same track against a reference whose bytes differ in one clip: recorded, but flagged at export
    other = tmp_path / "other-root"
    shutil.copytree(demo_dataset, other)
    key = _first_test_keys(other, 1)[0][0]
    index = json.loads((other / "shards" / "index.json").read_text())
    tar_path = next(other / "shards" / r["path"] for r in index["shards"]
                    if r["split"] == "test" and r["size"] == 64 and f"{key}.json" in _names(other / "shards" / r["path"]))
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:  # one clip's metadata gains a trailing space: same meaning, other bytes
        for m, data in members:
            if m.name == f"{key}.json":
                data += b" "
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    for name in ("b", "c"):
        res = _eval("--track", track, "--samples", samples, "--reference", demo_dataset if name == "b" else other,
                    "--results-dir", results, "--name", name)
        assert res.exit_code == 0, res.output
    rec_c = json.loads((results / "c.json").read_text())
    assert rec_c["reference_fingerprint"] != rec["reference_fingerprint"]
    # a record without a track (the default protocol) goes into its own table
    res = _eval("--samples", samples, "--av-align", "--num-clips", 2, "--results-dir", results, "--name", "d")
    assert res.exit_code == 0, res.output

    out = CliRunner().invoke(app, ["leaderboard", "export", "--results-dir", results, "--csv", tmp_path / "lb.csv",
                                   "--markdown", tmp_path / "lb.md"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "lb.csv").open())}
    assert {n: rows[n]["track"] for n in "abcd"} == {"a": "avsync-64", "b": "avsync-64", "c": "avsync-64", "d": ""}
    assert rows["a"]["flag"] == rows["b"]["flag"] == rows["d"]["flag"] == ""
    assert "reference fingerprint" in rows["c"]["flag"] and "2 of 3 rows" in rows["c"]["flag"]
    assert rows["a"]["reference_fingerprint"] == rec["reference_fingerprint"] and rows["a"]["protocol"] == "avbench"
    md = (tmp_path / "lb.md").read_text()
    track_part, _, untracked = md.partition("### No track")
    main_table, _, flagged = track_part.partition("Not comparable with track avsync-64")
    assert "| a |" in main_table and "| b |" in main_table and "| c |" not in main_table
    assert "| c |" in flagged and "| d |" in untracked and "| d |" not in track_part
    assert f"reference {rec['reference_fingerprint'][:12]}" in main_table


def test_track_flags_that_contradict_it_are_refused(demo_dataset, samples, tmp_path):
    track = _write_track(tmp_path, "t2")
    for extra, message in ((["--fvd"], "fixes the metrics (av_align); drop --fvd"),
                           (["--protocol", "styleganv"], "fixes --protocol avbench"),
                           (["--num-clips", 5], "fixes --num-clips 3"),
                           (["--seed", 4], "fixes --seed 0")):
        res = _eval("--track", track, "--samples", samples, "--reference", demo_dataset, *extra,
                    "--results-dir", tmp_path / "r")
        assert res.exit_code == 2 and message in res.output, res.output
    res = _eval("--track", track, "--samples", samples, "--reference", f"{demo_dataset}:test",
                "--results-dir", tmp_path / "r")
    assert res.exit_code == 2 and "--reference is the dataset ROOT" in res.output


def test_track_reference_root_defaults_to_data_spec_name(demo_dataset, samples, tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    track = _write_track(tmp_path, "t3")
    res = _eval("--track", track, "--samples", samples, "--results-dir", tmp_path / "r")
    assert res.exit_code == 2 and "data/demo/shards/index.json" in res.output and "avbench build demo" in res.output
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "demo").symlink_to(demo_dataset)
    res = _eval("--track", track, "--samples", samples, "--results-dir", tmp_path / "r", "--name", "x")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r" / "x.json").read_text())
    assert rec["track"]["reference_root_from"] == "spec default" and rec["track"]["reference_root"] == "data/demo"


def test_demo_64_track_with_fvd_end_to_end(demo_dataset, samples, i3d_ckpt, tmp_path, monkeypatch):
    """The issue's acceptance line: `avbench eval --track demo-64 --samples OUT` (real I3D, random VGGish)."""
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    res = _eval("--track", "demo-64", "--samples", samples, "--reference", demo_dataset, "--i3d-weights", i3d_ckpt,
                "--allow-random-vggish", "--results-dir", results, "--name", "demo", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rec = json.loads((results / "demo.json").read_text())
    track = load_track("demo-64")
    assert rec["track"]["name"] == "demo-64" and rec["track"]["sha256"] == track.sha256
    assert rec["protocol"]["name"] == "avbench" and rec["protocols"]["fvd"]["profile"]["name"] == "tf"
    assert set(rec["scores"]) == {"fvd", "kvd", "fad", "av_align"} and rec["scores"]["fvd"] > 0
    assert rec["counts"]["generated_clips"] == 4 and rec["counts"]["reference_clips"] == 4
    assert rec["overrides"]["fvd_allow_small"] is True
    src = parse_source(f"{demo_dataset}:test:64")
    assert rec["reference_fingerprint"] == reference_fingerprint(src, _first_test_keys(demo_dataset, 4))
    out = CliRunner().invoke(app, ["leaderboard", "export", "--results-dir", results, "--csv", tmp_path / "lb.csv",
                                   "--markdown", tmp_path / "lb.md"])
    assert out.exit_code == 0, out.output
    row = next(csv.DictReader((tmp_path / "lb.csv").open()))
    assert row["track"] == "demo-64" and row["protocol"] == "avbench" and row["flag"] == ""
    assert (tmp_path / "lb.md").read_text().startswith("### Track demo-64 · protocol avbench")
