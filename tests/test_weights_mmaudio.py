"""MMAudio's weights in the registry: md5 checks (the only digest MMAudio publishes), licences, bundles,
the one-line error without weights or network, and a fetch from a loopback server.

Specs registered here are test-only and carry digests of bytes the tests write, never invented ones; the
registry's own md5 values are those of mmaudio/utils/download_utils.py (commit 974010a)."""

import dataclasses
import hashlib

import pytest
from support.httpserver import FaultServer
from typer.testing import CliRunner

from avbench import weights
from avbench.cli import app
from avbench.errors import WeightsError
from avbench.weights import BUNDLES, MMAUDIO_LICENCE, REGISTRY, WeightsChecksumError

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: the connection is refused at once

# (file name, md5) exactly as download_utils.py lists them
PUBLISHED = {
    "mmaudio_small_16k.pth": "af93cde404179f58e3919ac085b8033b",
    "mmaudio_small_44k.pth": "babd74c884783d13701ea2820a5f5b6d",
    "mmaudio_medium_44k.pth": "5a56b6665e45a1e65ada534defa903d0",
    "mmaudio_large_44k.pth": "fed96c325a6785b85ce75ae1aafd2673",
    "mmaudio_large_44k_v2.pth": "01ad4464f049b2d7efdaa4c1a59b8dfe",
    "v1-16.pth": "69f56803f59a549a1a507c93859fd4d7",
    "best_netG.pt": "eeaf372a38a9c31c362120aba2dde292",
    "v1-44.pth": "fab020275fa44c6589820ce025191600",
    "synchformer_state_dict.pth": "5b2f5594b0730f70e41e549b7c94390c",
}


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("AVBENCH_CACHE", str(cache))
    for spec in REGISTRY.values():
        monkeypatch.delenv(spec.env, raising=False)
    return cache


def _mmaudio_specs():
    return {s.filename: s for s in REGISTRY.values() if s.licence == MMAUDIO_LICENCE}


def test_every_published_file_is_registered_with_its_md5_url_and_licence():
    specs = _mmaudio_specs()
    assert {f: s.md5 for f, s in specs.items()} == PUBLISHED
    for f, s in specs.items():
        assert s.url.endswith("/" + f) and s.url.startswith("https://")
        assert s.sha256 is None and "non-commercial" in s.licence
        assert s.expected() == f"md5 {s.md5}"


def _test_spec(monkeypatch, body: bytes, url: str = UNREACHABLE + "tiny.pth") -> weights.WeightSpec:
    spec = dataclasses.replace(REGISTRY["mmaudio-net-small-16k"], name="mmaudio-test", filename="tiny.pth", url=url,
                               env="AVBENCH_TEST_MMAUDIO", md5=hashlib.md5(body).hexdigest())
    monkeypatch.setitem(REGISTRY, "mmaudio-test", spec)
    return spec


def test_md5_accepts_the_right_file_and_refuses_another(tmp_path, monkeypatch, empty_cache, capsys):
    good = tmp_path / "tiny.pth"
    good.write_bytes(b"released weights" * 100)
    spec = _test_spec(monkeypatch, good.read_bytes())
    path, digest = weights.resolve("mmaudio-test", good)
    assert (path, digest) == (good, hashlib.sha256(good.read_bytes()).hexdigest())
    # the sha256 is printed so it can be pinned; only the md5 vouched for it
    assert f"its full sha256 is {digest}" in capsys.readouterr().err
    bad = tmp_path / "other.pth"
    bad.write_bytes(b"something else")
    with pytest.raises(WeightsChecksumError) as exc:
        weights.resolve("mmaudio-test", bad)
    msg = str(exc.value)
    assert "\n" not in msg and f"expected md5 {spec.md5}" in msg and "--network-weights" in msg


def test_missing_weight_without_network_is_one_line_with_url_licence_and_flag(empty_cache):
    with pytest.raises(WeightsError) as exc:
        weights.resolve("mmaudio-net-small-16k")
    msg = str(exc.value)
    spec = REGISTRY["mmaudio-net-small-16k"]
    assert "\n" not in msg
    for part in (spec.filename, spec.url, MMAUDIO_LICENCE, "--network-weights", "$AVBENCH_MMAUDIO_SMALL_16K",
                 "avbench weights fetch mmaudio-small-16k"):
        assert part in msg, part


def test_failed_download_is_one_line_with_url_licence_and_flag(empty_cache, monkeypatch):
    _test_spec(monkeypatch, b"x")
    with pytest.raises(WeightsError) as exc:
        weights.fetch("mmaudio-test")
    msg = str(exc.value)
    assert "\n" not in msg
    for part in ("mmaudio-test", UNREACHABLE + "tiny.pth", MMAUDIO_LICENCE, "--network-weights", "$AVBENCH_TEST_MMAUDIO"):
        assert part in msg, part
    assert not (empty_cache / "weights" / "tiny.pth").exists()  # nothing half-written is left behind


def test_bundles_list_every_file_their_variant_needs():
    small = BUNDLES["mmaudio-small-16k"].members
    assert all(m in REGISTRY for b in BUNDLES.values() for m in b.members)
    files = [REGISTRY[m].filename for m in small]
    assert files == ["mmaudio_small_16k.pth", "v1-16.pth", "best_netG.pt", "synchformer_state_dict.pth",
                     REGISTRY["clip-dfn5b-vit-h-14-384"].filename, "bpe_simple_vocab_16e6.txt.gz"]
    for v in ("small-44k", "medium-44k", "large-44k", "large-44k-v2"):
        b = BUNDLES[f"mmaudio-{v}"]
        assert f"mmaudio-net-{v}" in b.members and "mmaudio-vae-44k" in b.members and "synchformer" in b.members
        assert "mmaudio-bigvgan-16k" not in b.members and "BigVGAN-v2" in b.note


def test_fetch_from_loopback_server_checks_md5_and_prints_licence_first(empty_cache, monkeypatch, capfd):
    body = b"\x00tiny mmaudio weights\x01" * 500
    with FaultServer() as srv:
        _test_spec(monkeypatch, body, srv.url("/weights/tiny.pth"))
        srv.add("/weights/tiny.pth", body, content_type="application/octet-stream")
        path, digest = weights.fetch("mmaudio-test")
        assert path == empty_cache / "weights" / "tiny.pth" and path.read_bytes() == body
        assert digest == hashlib.sha256(body).hexdigest()
        err = capfd.readouterr().err
        assert err.index(MMAUDIO_LICENCE) < err.index("its full sha256")
        # a server that sends other bytes under the same name: refused, cache untouched
        srv.add("/weights/tiny2.pth", b"tampered", content_type="application/octet-stream")
        _test_spec(monkeypatch, body, srv.url("/weights/tiny2.pth"))
        path.unlink()
        with pytest.raises(WeightsChecksumError, match="expected md5"):
            weights.fetch("mmaudio-test")
        assert not path.exists()


def test_cli_fetches_a_bundle_with_licences_before_downloads(empty_cache, monkeypatch):
    bodies = {"a.pth": b"aaaa" * 300, "b.pth": b"bbbb" * 300}
    with FaultServer() as srv:
        for n, body in bodies.items():
            srv.add(f"/w/{n}", body, content_type="application/octet-stream")
            spec = dataclasses.replace(REGISTRY["mmaudio-vae-16k"], name=f"test-{n}", filename=n,
                                       url=srv.url(f"/w/{n}"), md5=hashlib.md5(body).hexdigest())
            monkeypatch.setitem(REGISTRY, f"test-{n}", spec)
        monkeypatch.setitem(BUNDLES, "mmaudio-test", weights.WeightBundle("mmaudio-test", ("test-a.pth", "test-b.pth")))
        res = CliRunner().invoke(app, ["weights", "fetch", "mmaudio-test"])
        assert res.exit_code == 0, res.output
        assert [r[0] for r in srv.state.requests] == ["/w/a.pth", "/w/b.pth"]
    out = res.output  # stdout and stderr as the user sees them
    assert out.count(MMAUDIO_LICENCE) == 2 and out.rindex(MMAUDIO_LICENCE) < out.index(" sha256 ")
    for n, body in bodies.items():
        assert (empty_cache / "weights" / n).read_bytes() == body
        assert f"{n} sha256 {hashlib.sha256(body).hexdigest()}" in res.stdout


def test_bundle_with_an_unregistered_member_fails_before_any_download(empty_cache, monkeypatch):
    monkeypatch.setitem(BUNDLES, "broken", weights.WeightBundle("broken", ("mmaudio-vae-16k", "nope")))
    with pytest.raises(WeightsError, match="not registered: nope"):
        weights.fetch_bundle("broken")
