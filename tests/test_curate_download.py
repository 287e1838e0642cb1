"""The download stage against a real loopback HTTP server with injected faults (real yt-dlp, real PyAV)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.fetchkit import HTML_PAGE, empty_mp4, render_bytes, url_spec
from support.httpserver import FaultServer

from avbench.curate.download import DownloadConfig, download_sources, download_stage
from avbench.curate.partition import Partition
from avbench.curate.records import ready_sources
from avbench.errors import EXIT_TRANSIENT


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _records(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "records").glob("*.json"))}


def _by_url(root: Path) -> dict[str, dict]:
    return {r["url"].rsplit("/", 1)[1]: r for r in _records(root).values()}


def _assert_cache_consistent(root: Path) -> None:
    """Every file under a final name is complete: its content hashes to its name."""
    for p in (root / "sources").glob("*"):
        assert not p.name.startswith("."), p
        assert _sha(p.read_bytes()) == p.name.split(".")[0], f"partial or wrong file under final name: {p}"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media")
    return {
        "good": [render_bytes(tmp, seed) for seed in range(1, 6)],
        "noaudio": render_bytes(tmp, 7, with_audio=False),
        "short": render_bytes(tmp, 8, duration_s=1.0),
        "empty261": empty_mp4(tmp),
        "long": render_bytes(tmp, 9, duration_s=10.0),  # ~50 KB: long enough to be killed mid-transfer
    }


def test_faults_classified_recorded_and_resumed(tmp_path, media):
    good = media["good"]
    root = tmp_path / "root"
    with FaultServer() as srv:
        srv.add("/ok.mp4", good[0])
        srv.add("/forbidden.mp4", good[1], fault="403")
        srv.add("/busy.mp4", good[2], fault="429")
        srv.add("/reset.mp4", good[3], fault="reset")
        srv.add("/cut.mp4", good[4], fault="truncate")
        srv.add("/page.mp4", HTML_PAGE, content_type="text/html")
        srv.add("/page-as-video.mp4", HTML_PAGE, content_type="video/mp4")
        srv.add("/silent.mp4", media["noaudio"])
        srv.add("/zero.mp4", b"")
        srv.add("/empty261.mp4", media["empty261"])
        srv.add("/tooshort.mp4", media["short"])
        names = sorted(p.lstrip("/") for p in srv.state.entries) + ["missing.mp4"]
        spec = url_spec(tmp_path / "spec.toml", [srv.url("/" + n) for n in names], min_clip_s=2.0)
        cfg = DownloadConfig(root=root, spec=str(spec), jobs=2, retries=1, backoff_s=0.0, progress=False)

        summary = download_sources(cfg)
        recs = _by_url(root)
        expected = {
            "ok.mp4": ("ok", None, None),
            "missing.mp4": ("failed", "permanent", "404"),
            "forbidden.mp4": ("failed", "transient", "403"),
            "busy.mp4": ("failed", "transient", "429"),
            "reset.mp4": ("failed", "transient", "reset by peer"),
            "cut.mp4": ("failed", "transient", "more expected"),
            "page.mp4": ("failed", "permanent", "Unsupported URL"),
            "page-as-video.mp4": ("failed", "permanent", "not a media file"),
            "silent.mp4": ("failed", "permanent", "no audio stream"),
            "zero.mp4": ("failed", "permanent", "Did not get any data blocks"),
            "empty261.mp4": ("failed", "permanent", "no audio or video stream (261 bytes)"),
            "tooshort.mp4": ("failed", "permanent", "too short (1.00 s < minimum 2.00 s)"),
        }
        assert sorted(recs) == sorted(expected)
        for name, (status, cls, needle) in expected.items():
            r = recs[name]
            assert (r["status"], r["error_class"]) == (status, cls), (name, r["error"])
            assert r["attempts"] == 1
            if needle:
                assert needle in r["error"], (name, r["error"])
                assert srv.url("/" + name) in r["error"]  # the message names the URL
                assert "\n" not in r["error"]
                assert r["sha256"] is None and r["path"] is None
        ok = recs["ok.mp4"]
        assert ok["sha256"] == _sha(good[0]) and ok["path"] == f"sources/{_sha(good[0])}.mp4"
        assert ok["probe"]["width"] == 96 and ok["probe"]["sample_rate"] == 16000 and ok["duration_s"] == 3.0
        assert sorted(p.name for p in (root / "sources").iterdir()) == [f"{_sha(good[0])}.mp4"]
        assert (summary.ok, summary.failed_permanent, summary.failed_transient) == (1, 7, 4)
        assert summary.exit_code == EXIT_TRANSIENT == 3
        # Partial transfers stay in the work dir so the next attempt resumes them; permanent ones are gone.
        tmp_left = sorted(p.name for p in (root / ".tmp").iterdir())
        assert tmp_left == sorted(recs[n]["source_id"] for n in ("forbidden.mp4", "busy.mp4", "reset.mp4", "cut.mp4"))
        assert any(p.suffix == ".part" for p in (root / ".tmp" / recs["reset.mp4"]["source_id"]).iterdir())
        assert [r["source_id"] for r in ready_sources(root)] == [ok["source_id"]]

        # The faults go away; a rerun retries exactly the transient failures.
        for path in ("/forbidden.mp4", "/busy.mp4", "/reset.mp4", "/cut.mp4"):
            srv.state.entries[path].fault = None
        n_requests = len(srv.state.requests)
        summary = download_sources(cfg)
        retried = {p for p, _ in srv.state.requests[n_requests:]}
        assert retried == {"/forbidden.mp4", "/busy.mp4", "/reset.mp4", "/cut.mp4"}
        # The reset download resumed its .part file with a Range request instead of starting over.
        resumed = [r for r in srv.requests_for("/reset.mp4")[-2:] if r]
        assert resumed and int(resumed[-1].split("=")[1].rstrip("-")) > 0
        recs = _by_url(root)
        for i, name in enumerate(("ok.mp4", "forbidden.mp4", "busy.mp4", "reset.mp4", "cut.mp4")):
            r = recs[name]
            assert r["status"] == "ok" and r["sha256"] == _sha(good[i]), name
            assert r["attempts"] == (1 if name == "ok.mp4" else 2)
        assert recs["missing.mp4"]["attempts"] == 1  # permanent failures are not retried
        assert (summary.ok, summary.failed_permanent, summary.failed_transient, summary.skipped) == (5, 7, 0, 8)
        assert summary.exit_code == 1
        assert not (root / ".tmp").exists()
        _assert_cache_consistent(root)


def test_partitions_split_the_work_and_add_up(tmp_path, media):
    with FaultServer() as srv:
        urls = [srv.add(f"/v{i}.mp4", b) for i, b in enumerate(media["good"])]
        spec = url_spec(tmp_path / "spec.toml", urls)
        root = tmp_path / "root"
        seen = []
        for i in range(2):
            cfg = DownloadConfig(root=root, spec=str(spec), partition=f"{i}/2", retries=0, progress=False)
            s = download_sources(cfg)
            seen.append({r["source_id"] for r in s.records})
            assert s.ok == len(s.records) and s.skipped == 0
        assert seen[0].isdisjoint(seen[1]) and len(seen[0] | seen[1]) == 5 and abs(len(seen[0]) - len(seen[1])) <= 1
        assert sorted(p.name for p in (root / "sources").iterdir()) == sorted(f"{_sha(b)}.mp4" for b in media["good"])
        # The whole set afterwards: nothing left to do.
        s = download_sources(DownloadConfig(root=root, spec=str(spec), progress=False))
        assert s.skipped == 5 and s.exit_code == 0


def _cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "avbench", *args]


def test_kill_mid_download_then_resume_equals_uninterrupted_run(tmp_path, media):
    """SIGKILL the CLI while a slow file is half downloaded; the rerun finishes and the cache and records
    are byte-identical to those of a run that was never interrupted."""
    good = media["good"]
    with FaultServer() as srv:
        urls = [srv.add(f"/a{i}.mp4", good[i]) for i in range(3)]
        urls.append(srv.add("/slow.mp4", media["long"], fault="slow", slow_chunk=2048, slow_delay_s=0.15))
        spec = url_spec(tmp_path / "spec.toml", urls)
        killed, clean = tmp_path / "killed", tmp_path / "clean"
        slow_id = "url-" + hashlib.sha256(urls[-1].encode()).hexdigest()[:12]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = _cli("download", str(spec), "--root", str(killed), "--no-progress", "--retries", "0", cwd=tmp_path)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        work = killed / ".tmp" / slow_id
        deadline = time.monotonic() + 60
        part = None
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                parts = list(work.glob("*.part")) if work.exists() else []
                if parts and parts[0].stat().st_size >= 8192:  # past Python's write buffer
                    part = parts[0]
                    break
                if (killed / "sources").exists():
                    _assert_cache_consistent(killed)
                time.sleep(0.02)
            assert part is not None, f"never saw a partial download; rc={proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _assert_cache_consistent(killed)
        assert not (killed / "records" / f"{slow_id}.json").exists()
        assert _sha(media["long"]) + ".mp4" not in {p.name for p in (killed / "sources").glob("*")}
        srv.state.entries["/slow.mp4"].slow_delay_s = 0.0
        n_before = len(srv.requests_for("/slow.mp4"))
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert any(r and r != "bytes=0-" for r in srv.requests_for("/slow.mp4")[n_before:]), "did not resume"

        s = download_sources(DownloadConfig(root=clean, spec=str(spec), retries=0, progress=False))
        assert s.exit_code == 0

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = tree(killed), tree(clean)
    assert sorted(a) == sorted(b)
    assert a == b
    assert len([k for k in a if k.startswith("sources/")]) == 4


def test_synthetic_and_file_sources_via_cli(tmp_path, media):
    """`avbench download SPEC` renders synthetic sources, copies local files, records a missing one, and
    `avbench info` shows the table; exit code 1 for a permanent failure."""
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "clip.mp4").write_bytes(media["good"][0])
    spec = tmp_path / "mixed.toml"
    spec.write_text(
        'name = "mixed"\ndescription = "d"\ntarget_hours = 0.01\n'
        '[[sources]]\nkind = "synthetic"\ncount = 2\nseed = 3\nmin_duration_s = 2.0\nmax_duration_s = 3.0\n'
        '[[sources]]\nkind = "file"\npaths = ["media/*.mp4", "media/gone.mp4"]\n'
        "[clip]\nskip_start_s = 0.0\nmin_clip_s = 1.0\n"
    )
    root = tmp_path / "root"
    r = subprocess.run(_cli("download", str(spec), "--root", str(root), "--no-progress", cwd=tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed (permanent)" in r.stdout
    recs = _records(root)
    assert sorted(k for k in recs if k.startswith("synth-")) == ["synth-3-0", "synth-3-1"]
    files = {Path(v["id"]).name: v for v in recs.values() if v["kind"] == "file"}
    assert files["clip.mp4"]["status"] == "ok" and files["clip.mp4"]["sha256"] == _sha(media["good"][0])
    assert files["gone.mp4"]["error_class"] == "permanent" and "file not found" in files["gone.mp4"]["error"]
    for sid in ("synth-3-0", "synth-3-1"):
        assert recs[sid]["status"] == "ok" and recs[sid]["probe"]["width"] == 640
        assert 2.0 <= recs[sid]["duration_s"] <= 3.1
    lock = (root / "lock.csv").read_text().splitlines()
    assert lock[0] == "source_id,kind,id,url,title,channel,duration_s,license,upload_date,query,ranges"
    assert len(lock) == 5

    info = subprocess.run(_cli("info", str(root), cwd=tmp_path), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert info.returncode == 0, info.stderr
    assert "4 sources: 3 ok" in info.stdout and "1 failed permanently" in info.stdout
    assert "synth-3-0" in info.stdout and "file not found" in info.stdout

    again = subprocess.run(_cli("download", str(spec), "--root", str(root), "--no-progress", cwd=tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and _records(root) == recs  # nothing redone, nothing changed

    bad = subprocess.run(_cli("download", str(tmp_path / "nope.toml"), "--root", str(root), cwd=tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "nope.toml: file not found" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_download_is_a_threaded_stage_with_failure_records_and_cleanup(tmp_path, media):
    """The download runs through run_stage like every stage: failures land in failures/download/ and
    leave with the next success; a record's temp copy left by a kill is removed before the job reruns."""
    with FaultServer() as srv:
        url = srv.add("/v.mp4", media["good"][0], fault="403")
        spec = url_spec(tmp_path / "spec.toml", [url])
        root = tmp_path / "root"
        cfg = DownloadConfig(root=root, spec=str(spec), retries=0, backoff_s=0.0, progress=False)
        stage = download_stage(cfg)
        assert (stage.name, stage.parallelism) == ("download", "threads")
        assert pickle.loads(pickle.dumps(stage)) == stage
        (job,) = stage.jobs(root, Partition(0, 1))
        assert not job.done
        assert download_sources(cfg).exit_code == EXIT_TRANSIENT
        failure = json.loads((root / "failures" / "download" / f"{job.source_id}.json").read_text())
        assert failure["error_class"] == "transient" and "403" in failure["error"]
        leftover = root / "records" / f".tmp-{job.source_id}.json.k2j3h4.json"
        leftover.write_text("{}")
        srv.state.entries["/v.mp4"].fault = None
        assert download_sources(cfg).exit_code == 0
        assert not (root / "failures" / "download" / f"{job.source_id}.json").exists()
        assert not leftover.exists()
        assert stage.jobs(root, Partition(0, 1))[0].done
