"""`avbench train latent` end to end on latent shards of the demo dataset: `avbench encode --vae tiny` (the
tiny random codec, written to disk and loaded back) on a copy of the `demo_dataset` shards, then the
tiny-latent config trains (the loss goes down, a checkpoint and model.pt are written with the codec and
the audio latent crop), `avbench sample` decodes the trained model into a folder `avbench eval` accepts.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from support.evalkit import eval_av_align
from typer.testing import CliRunner

from avbench.cli import app
from avbench.train.logging import read_log

pytest.importorskip("diffusers")

FAST = ["--set", "log.every=5", "--set", "checkpoint.every=20", "--set", "data.batch_size=4",
        "--set", "log.preview_every=40", "--set", "log.preview_sampler_steps=2"]


@pytest.fixture(scope="module")
def latent_root(demo_dataset, tmp_path_factory):
    """A root holding a copy of the demo's pixel shards and their tiny-codec latent shards."""
    root = tmp_path_factory.mktemp("latent-root")
    shutil.copytree(demo_dataset / "shards", root / "shards")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVBENCH_CACHE", str(tmp_path_factory.mktemp("avbench-cache")))
        res = CliRunner().invoke(app, ["encode", str(root), "--vae", "tiny", "--size", "64", "--threads", "1",
                                       "--no-progress"])
        assert res.exit_code == 0, res.output
        yield root


@pytest.fixture(scope="module")
def trained(latent_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("latent-run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster and steadier on a shared CPU
    try:
        res = CliRunner().invoke(app, ["train", "latent", "--config", "tiny-latent", "--data", str(latent_root),
                                       "--out", str(run), "--max-steps", "40", "--no-progress", *FAST])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    return run


def test_latent_training_learns_and_writes_a_checkpoint_with_codec_and_audio_crop(trained, latent_root):
    rows = read_log(trained)
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    first, last = rows[0]["loss"], min(r["loss"] for r in rows[-2:])
    assert last < 0.85 * first, [r["loss"] for r in rows]
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["ckpt-00000020.pt", "ckpt-00000040.pt"]
    # the preview decodes sampled latents through the codec: 16 frames at the encoded 64 px, with audio
    import av

    with av.open(str(trained / "previews" / "step-00000040-0.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert kinds == ["audio", "video"] and len(frames) == 16 and frames[0].shape == (64, 64, 3)
    model_pt = torch.load(trained / "model.pt", weights_only=True)
    cfg = model_pt["config"]
    index = json.loads((latent_root / "latents" / "tiny" / "64" / "index.json").read_text())
    assert model_pt["kind"] == "latent" and cfg["codec"] == "tiny" and cfg["pixel_size"] == 64
    cv, h, w = index["video_latent"]["shape_per_frame"]
    assert cfg["video_size"] == [16, cv, h, w] and cfg["video_out_channels"] == cv
    # 16 frames at 31.25 Hz = 50 audio latents, cropped to 48 (one per end) for 3 latents per frame
    assert index["audio_latent"]["latents_per_frame"] == "25/8"
    assert (cfg["audio_latent_length"], cfg["audio_crop"]) == (50, [1, 1])
    assert cfg["audio_size"] == [index["audio_latent"]["channels"], 48]


def test_trained_latent_model_samples_into_a_folder_eval_accepts(trained, latent_root, tmp_path, monkeypatch):
    out = tmp_path / "samples"
    res = CliRunner().invoke(app, ["sample", "--checkpoint", str(trained / "model.pt"), "--out", str(out),
                                   "--num-samples", "2", "--batch-size", "2", "--sampler", "ddim", "--steps", "3",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text())
    assert doc["latent"]["codec"]["name"] == "tiny" and doc["video"]["height"] == 64
    assert doc["latent"]["audio_latent"]["crop"] == [1, 1]
    assert eval_av_align(out, tmp_path / "r", "latent")["protocols"]["av_align"]["n_clips"] == 2


def test_latent_training_input_errors_are_one_line(latent_root, tmp_path):
    res = CliRunner().invoke(app, ["train", "latent", "--config", "tiny", "--data", str(latent_root),
                                   "--out", str(tmp_path / "a"), "--no-progress"])
    assert res.exit_code != 0 and "use `avbench train baseline`" in res.output
    res = CliRunner().invoke(app, ["train", "latent", "--config", "tiny-latent", "--data", str(latent_root),
                                   "--out", str(tmp_path / "b"), "--no-progress", "--set", "data.latents.size=32"])
    assert res.exit_code != 0 and "no latent index" in res.output and "avbench encode" in res.output
    res = CliRunner().invoke(app, ["train", "latent", "--config", "tiny-latent", "--data", str(latent_root),
                                   "--out", str(tmp_path / "c"), "--no-progress", "--set", "data.frames=12"])
    assert res.exit_code != 0 and "multiple of 8 frames" in res.output
