"""`avbench encode` → latent shards (tiny codecs written to disk, demo pixel shards at 64 px): byte-identical
reruns, SIGKILL + resume, partitions, the index and members, failure records, and the latent window loader."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support.latentkit import codec_flags, copy_pixel_root, encoded_root, tiny_codec_files

pytest.importorskip("diffusers")

from avbench.encode.stage import EncodeConfig, encode_root

LATENTS = Path("latents") / "tiny" / "64"


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    return tiny_codec_files(tmp_path_factory.mktemp("tiny-codec"), "tiny")


@pytest.fixture(scope="module")
def reference(demo_dataset, tiny_paths, tmp_path_factory):
    """The demo pixel shards, encoded once with the tiny codec."""
    return encoded_root(demo_dataset, tmp_path_factory.mktemp("latent-ref"), tiny_paths)


def _cfg(root: Path, paths, **kw) -> EncodeConfig:
    return EncodeConfig(root=root, vae="tiny", size=64, video_vae=paths.video_vae, audio_vae=paths.audio_vae,
                        vocoder=paths.vocoder, threads=1, progress=False, **kw)


def _outputs(root: Path) -> dict[str, bytes]:
    """Every tar and the index of the latent set, by relative path."""
    base = root / LATENTS
    files = sorted(base.glob("*/[!.]*.tar")) + [base / "index.json"]
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in files}


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_two_runs_are_byte_identical(reference, demo_dataset, tiny_paths, tmp_path):
    again = copy_pixel_root(demo_dataset, tmp_path / "again")
    summary = encode_root(_cfg(again, tiny_paths))
    assert summary.stage.done == 4 and summary.index_path is not None
    ref, got = _outputs(reference), _outputs(again)
    assert len(ref) == 5 and ref == got  # 4 shards (2 train, 2 test) + index
    # a rerun over finished shards skips them all and rewrites the same index
    rerun = encode_root(_cfg(again, tiny_paths))
    assert rerun.stage.skipped == 4 and rerun.stage.done == 0 and _outputs(again) == ref


def test_sigkill_then_resume_gives_the_same_bytes(reference, demo_dataset, tiny_paths, tmp_path):
    root = copy_pixel_root(demo_dataset, tmp_path / "killed")
    done_dir = root / LATENTS / "done"
    cmd = [sys.executable, "-m", "avbench", "encode", str(root), "--vae", "tiny", "--size", "64", "--threads", "1",
           "--no-progress", *codec_flags(tiny_paths)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if done_dir.is_dir() and list(done_dir.glob("*/[!.]*.json")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "encode finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = list(done_dir.glob("*/[!.]*.json"))
    assert 1 <= len(finished) < 4, finished
    assert not (root / LATENTS / "index.json").exists()  # removed first, written only when all are done

    resumed = encode_root(_cfg(root, tiny_paths))
    assert resumed.stage.skipped == len(finished) and resumed.stage.done == 4 - len(finished)
    assert _outputs(root) == _outputs(reference)
    assert not list((root / LATENTS).rglob(".tmp-*"))


def test_damaged_output_shard_is_encoded_again(reference, tmp_path, tiny_paths):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(reference, root)
    victim = min((root / LATENTS / "train").glob("*.tar"))
    data = bytearray(victim.read_bytes())
    data[600:664] = bytes(64)
    victim.write_bytes(bytes(data))
    summary = encode_root(_cfg(root, tiny_paths))
    assert summary.stage.done == 1 and summary.stage.skipped == 3  # verified by sha256, not by existence
    assert _outputs(root) == _outputs(reference)


def test_partitions_then_index(reference, demo_dataset, tiny_paths, tmp_path):
    root = copy_pixel_root(demo_dataset, tmp_path / "parts")
    first = encode_root(_cfg(root, tiny_paths, partition="0/2"))
    assert first.stage.done == 2 and first.index_path is None and len(first.missing) == 2
    second = encode_root(_cfg(root, tiny_paths, partition="1/2"))
    assert second.stage.done == 2 and second.index_path is not None
    assert _outputs(root) == _outputs(reference)


def test_index_and_members(reference):
    index = json.loads((reference / LATENTS / "index.json").read_text())
    assert index["format"] == "avbench-latents-v1" and index["posterior"] == "mean" and index["dtype"] == "float16"
    codec = index["codec"]
    assert codec["name"] == "tiny" and codec["video"]["scaling_factor"] == 0.18215 and codec["video"]["sha256"]
    assert codec["audio"]["vae"]["tensors_sha256"] and codec["audio"]["vocoder"]["tensors_sha256"]
    assert index["video_latent"]["shape_per_frame"] == [4, 8, 8]
    assert index["audio_latent"]["rate_hz"] == 31.25 and index["audio_latent"]["frame_step"] == 8
    pixel = json.loads((reference / "shards" / "index.json").read_text())
    assert sorted((r["split"], r["samples"]) for r in index["shards"]) == \
        sorted((r["split"], r["samples"]) for r in pixel["shards"] if r["size"] == 64)
    from avbench.io import sha256_file

    for row in index["shards"]:
        tar_path = reference / LATENTS / row["path"]
        assert sha256_file(tar_path) == row["sha256"] and tar_path.stat().st_size == row["bytes"]
        with tarfile.open(tar_path) as tar:
            infos = [m for m in tar]
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o444 for m in infos)
        members = _members(tar_path)
        keys = sorted({n.split(".", 1)[0] for n in members})
        assert len(keys) == row["samples"]
        for key in keys:
            meta = json.loads(members[f"{key}.json"])
            video = np.load(io.BytesIO(members[f"{key}.video.npy"]))
            audio = np.load(io.BytesIO(members[f"{key}.audio.npy"]))
            frames = meta["video"]["frames"]
            assert video.dtype == np.float16 and video.shape == (frames, 4, 8, 8)
            # exactly the clip's audio (frames · 1600 samples), padded up to whole 512-sample latents
            assert audio.dtype == np.float16 and audio.shape == (4, math.ceil(frames * 1600 / 512))
            lat = meta["latent"]
            assert lat["audio"]["input_samples"] == frames * 1600 == meta["audio"]["samples"]
            assert lat["audio"]["pad_samples"] == audio.shape[1] * 512 - frames * 1600
            assert lat["fingerprint"] == index["fingerprint"] and meta["key"] == key
            assert np.isfinite(video).all() and np.abs(video).max() > 0


def test_damaged_pixel_shard_is_a_failure_record(demo_dataset, tiny_paths, tmp_path):
    root = copy_pixel_root(demo_dataset, tmp_path / "damaged")
    victim = min((root / "shards" / "64" / "test").glob("*.tar"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # a damaged disk block (the tar's tail is zeros anyway)
    victim.write_bytes(bytes(data))
    summary = encode_root(_cfg(root, tiny_paths, splits=("test",)))
    assert summary.stage.failed == 1 and summary.stage.done == 1 and summary.index_path is None
    record = json.loads((root / "failures" / "encode" / f"tiny.{victim.stem}.json").read_text())
    assert record["error_class"] == "permanent" and "sha256" in record["error"] and str(victim) in record["error"]


def test_loader_windows_are_aligned(reference):
    from avbench.data.latents import make_latent_loader
    from avbench.errors import ConfigError

    stored = {}
    for tar_path in (reference / LATENTS / "train").glob("*.tar"):
        m = _members(tar_path)
        for name, data in m.items():
            key, ext = name.split(".", 1)
            if ext.endswith("npy"):
                stored.setdefault(key, {})[ext] = np.load(io.BytesIO(data)).astype(np.float32)
    loader = make_latent_loader(reference, "tiny", 64, "train", frames=16, batch_size=2, seed=3)
    seen = 0
    for _ in range(2):  # two epochs
        for batch in loader:
            assert batch["video"].shape[1:] == (16, 4, 8, 8) and batch["audio"].shape[1:] == (4, 50)
            for i, key in enumerate(batch["key"]):
                start, a0 = int(batch["start"][i]), int(batch["audio_start"][i])
                assert start % 8 == 0 and a0 == start * 25 // 8  # 8 frames = 25 latents exactly
                torch.testing.assert_close(batch["video"][i].numpy(), stored[key]["video.npy"][start : start + 16])
                torch.testing.assert_close(batch["audio"][i].numpy(), stored[key]["audio.npy"][:, a0 : a0 + 50])
                seen += 1
    assert seen == 2 * len(loader) * 2
    # eval: fixed windows, every test clip once, start rounded down to the step
    ev = make_latent_loader(reference, "tiny", 64, "test", frames=16, batch_size=4, mode="eval", eval_start=13)
    starts = [int(s) for b in ev for s in b["start"]]
    rows = json.loads((reference / LATENTS / "index.json").read_text())["shards"]
    assert len(starts) == sum(r["samples"] for r in rows if r["split"] == "test")
    assert set(starts) <= {0, 8}
    with pytest.raises(ConfigError, match="multiple of 8"):
        make_latent_loader(reference, "tiny", 64, "train", frames=12)


def test_audioldm2_layout_through_encode_and_loader(demo_dataset, tmp_path):
    """The 2-D AudioLDM latent arrives flattened to [8·16, T'] at 25 Hz; windows start on even frames."""
    from avbench.data.latents import make_latent_loader

    paths = tiny_codec_files(tmp_path / "codec", "tiny-audioldm2")
    root = encoded_root(demo_dataset, tmp_path / "root", paths, vae="tiny-audioldm2", splits=("test",))
    index = json.loads((root / "latents" / "tiny-audioldm2" / "64" / "index.json").read_text())
    assert index["audio_latent"]["channels"] == 128 and index["audio_latent"]["latents_per_frame"] == "5/2"
    assert index["codec"]["audio"]["layout"] == "[C·F', T'] = [8·16, T'], index c·16 + f"
    loader = make_latent_loader(root, "tiny-audioldm2", 64, "test", frames=16, batch_size=3, seed=1)
    for batch in loader:
        assert batch["audio"].shape[1:] == (128, 40) and batch["video"].shape[1:] == (16, 4, 8, 8)
        assert all(int(s) % 2 == 0 for s in batch["start"])
        assert [int(a) for a in batch["audio_start"]] == [int(s) * 5 // 2 for s in batch["start"]]


def test_verify_checks_latent_shards_too(reference, tmp_path):
    """`avbench verify ROOT` also checks ROOT/latents/<vae>/<size>/ against its index: a damaged latent tar
    is named (exit 1) while the pixel shards still match; an unusable latent index is reported, not fatal."""
    import shutil

    from typer.testing import CliRunner

    from avbench.cli import app

    root = Path(shutil.copytree(reference, tmp_path / "root"))
    ok = CliRunner().invoke(app, ["verify", str(root)])
    assert ok.exit_code == 0 and "4 latent shard(s)" in ok.output and "latents/tiny/64/index.json" in ok.output
    victim = max((root / LATENTS / "test").glob("[!.]*.tar"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["verify", str(root)])
    assert bad.exit_code == 1, bad.output
    assert f"{victim}: sha256" in bad.output and "avbench encode" in bad.output and "1 of 8 shard(s)" in bad.output
    (root / LATENTS / "index.json").write_text("{")
    broken = CliRunner().invoke(app, ["verify", str(root)])
    assert broken.exit_code == 1 and "not valid JSON" in broken.output
