"""The `hf` source kind through huggingface_hub, against a loopback server answering the hub's API
(HF_ENDPOINT): listing pinned to the commit, downloads through the hub cache (HF_HOME), HF_TOKEN sent,
429 waited out, HF_HUB_OFFLINE with a warm cache and without one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from support.fetchkit import render_bytes
from support.httpserver import FaultServer, add_hf_dataset

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.lock import read_lock, write_lock
from avbench.curate.resolve import resolve_entries
from avbench.curate.sources import SourceEntry
from avbench.curate.spec import load_spec
from avbench.errors import EXIT_TRANSIENT, ResolveError

REPO = "someone/cod-av"
SHA = "5f1e2d3c4b5a69788796a5b4c3d2e1f001122334"
SPEC = """name = "hfcod"
description = "hf on loopback"
target_hours = 0.01
[[sources]]
kind = "hf"
repo = "someone/cod-av"
pattern = "*.mp4"
[clip]
skip_start_s = 0.0
min_clip_s = 1.0
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf-media")
    return [render_bytes(tmp, seed) for seed in (41, 42)]


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A private HF_HOME (the hub cache) and no token or offline switch leaking in from the machine."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hf-home"


def _serve(srv: FaultServer, clips: list[bytes]) -> dict[str, str]:
    return add_hf_dataset(srv, REPO, SHA, {"README.md": b"# cod", "clips/b.mp4": clips[1], "clips/a.mp4": clips[0]},
                          card={"license": "cc-by-nc-4.0"})


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avbench", *args], env=env, capture_output=True, text=True, timeout=120)


def test_listing_pins_the_commit_and_downloads_go_through_the_hub_cache(tmp_path, clips, hub_env, monkeypatch):
    spec_path = tmp_path / "hfcod.toml"
    spec_path.write_text(SPEC)
    with FaultServer() as srv:
        paths = _serve(srv, clips)
        monkeypatch.setenv("HF_ENDPOINT", srv.url(""))
        monkeypatch.setenv("HF_TOKEN", "hf_loopbacktoken")
        rows = resolve_entries(load_spec(spec_path))
        assert all(r.kind == "hf" for r in rows)
        assert {r.id for r in rows} == {"clips/a.mp4", "clips/b.mp4"}  # README.md does not match *.mp4
        assert all(r.url == f"{srv.url('')}/datasets/{REPO}/resolve/{SHA}/{r.id}" for r in rows)  # the commit, not "main"
        assert all(r.license == "cc-by-nc-4.0" and r.channel == REPO for r in rows)
        # huggingface_hub listed the tree at the sha it was told, after reading the branch once
        assert srv.requests_for(f"/api/datasets/{REPO}/revision/main") and srv.requests_for(f"/api/datasets/{REPO}/tree/{SHA}")
        lock = write_lock(tmp_path / "hfcod.lock.csv", rows)

        srv.state.entries[paths["clips/a.mp4"]].fault, srv.state.entries[paths["clips/a.mp4"]].times = "429", 1
        srv.state.entries[paths["clips/a.mp4"]].retry_after = "0"
        root = tmp_path / "root"
        s = download_sources(DownloadConfig(root=root, lock=lock, spec=str(spec_path), backoff_s=0.0, progress=False))
        assert s.exit_code == 0 and s.ok == 2, [r.error for r in s.records]
        for r in s.records:
            assert r.fetcher.startswith("huggingface_hub ") and r.format_id == SHA
        want = {_sha(c) for c in clips}
        assert {r.sha256 for r in s.records} == want
        # the files are in the hub's cache (so other tools, and the next root, reuse them)
        blobs = hub_env / "hub" / f"datasets--{REPO.replace('/', '--')}" / "blobs"
        assert {_sha(p.read_bytes()) for p in blobs.iterdir()} == want
        # the token reached the hub on every request
        assert {a for p, a in srv.state.authorization if "/resolve/" in p} == {"Bearer hf_loopbacktoken"}
        assert len([p for p, _ in srv.state.requests if p == paths["clips/a.mp4"]]) >= 2  # the 429 was retried

    # The server is gone: offline with the warm cache rebuilds another root; a cold cache fails in one line.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = _cli("download", str(lock), "--spec", str(spec_path), "--root", str(tmp_path / "offline"), "--no-progress", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    offline = [json.loads(p.read_text()) for p in (tmp_path / "offline" / "records").glob("*.json")]
    assert {rec["sha256"] for rec in offline} == want

    cold = {**env, "HF_HOME": str(tmp_path / "cold")}
    r = _cli("download", str(lock), "--spec", str(spec_path), "--root", str(tmp_path / "cold-root"), "--no-progress", env=cold)
    assert r.returncode == EXIT_TRANSIENT, r.stdout + r.stderr
    recs = [json.loads(p.read_text()) for p in (tmp_path / "cold-root" / "records").glob("*.json")]
    assert len(recs) == 2 and all(rec["error_class"] == "transient" for rec in recs)
    for rec in recs:
        assert "HF_HUB_OFFLINE is set" in rec["error"] and "\n" not in rec["error"] and rec["url"] in rec["error"]


def test_missing_file_is_permanent_and_listing_errors_are_one_line(tmp_path, clips, hub_env, monkeypatch):
    spec_path = tmp_path / "hfcod.toml"
    spec_path.write_text(SPEC)
    with FaultServer() as srv:
        paths = _serve(srv, clips)
        monkeypatch.setenv("HF_ENDPOINT", srv.url(""))
        rows = resolve_entries(load_spec(spec_path))
        del srv.state.entries[paths["clips/b.mp4"]]  # the file vanished from the pinned commit
        gated = srv.state.entries[paths["clips/a.mp4"]]  # and the other needs a token (the hub's headers)
        gated.fault, gated.fault_headers = "403", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}
        s = download_sources(DownloadConfig(root=tmp_path / "root", lock=write_lock(tmp_path / "l.csv", rows),
                                            spec=str(spec_path), progress=False))
        by_id = {r.id: r for r in s.records}
        for r in by_id.values():
            assert (r.status, r.error_class) == ("failed", "permanent") and "\n" not in r.error, r.error
        assert "pin it again" in by_id["clips/b.mp4"].error
        assert "gated repository" in by_id["clips/a.mp4"].error and "HF_TOKEN" in by_id["clips/a.mp4"].error

        (tmp_path / "gone.toml").write_text(SPEC.replace("someone/cod-av", "someone/nope"))
        with pytest.raises(ResolveError) as err:
            resolve_entries(load_spec(tmp_path / "gone.toml"))
        line = str(err.value).splitlines()[1]
        assert "hf dataset someone/nope: " in line and "answered HTTP 404; check the repository name" in line, line

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    r = _cli("resolve", str(spec_path), "--out", str(tmp_path / "x.csv"), env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "hf dataset someone/cod-av: HF_HUB_OFFLINE is set" in r.stderr and "resolve once online" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 2  # the count line and one line for the source


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_a_lock_row_that_is_not_a_resolve_url_is_refused(tmp_path, hub_env, clips):
    bad = SourceEntry(source_id="hf-000000000000", kind="hf", id="a.mp4", url="https://example.org/a.mp4")
    s = download_sources(DownloadConfig(root=tmp_path / "root", lock=write_lock(tmp_path / "l.csv", [bad]), progress=False))
    rec = s.records[0]
    assert rec.error_class == "permanent" and "not a Hugging Face dataset resolve URL" in rec.error
    assert read_lock(tmp_path / "l.csv")[0].url == "https://example.org/a.mp4"
