"""`avbench sample` end to end with tiny random-weight models: layout, decoding, determinism, resume,
super-resolution, conditional generation and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from support.samplekit import make_mmunet_checkpoint, make_sr_checkpoint
from typer.testing import CliRunner

from avbench.errors import SampleError
from avbench.io import sha256_file
from avbench.sample import SampleConfig, run_sampling

FRAMES, SIZE, AUDIO = 4, 32, 6400


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_module():
    # Module scope on purpose: the module-scoped sample runs below must use the same thread count as the
    # per-test reruns, since CPU reductions (and so the last bits of a sample) depend on it.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    make_mmunet_checkpoint(d / "model.pt", steps=100)
    make_sr_checkpoint(d / "sr.pt", steps=100)
    return d


def run(work: Path, out: str, **kw) -> dict:
    kw.setdefault("num_samples", 3)
    kw.setdefault("batch_size", 2)
    kw.setdefault("steps", 3)
    return run_sampling(SampleConfig(checkpoint=work / "model.pt", out=work / out, progress=False, **kw))


@pytest.fixture(scope="module")
def first(work) -> Path:
    run(work, "first", seed=0)
    return work / "first"


def decode(path: Path) -> tuple[np.ndarray, float, np.ndarray, int]:
    with av.open(str(path)) as c:
        vs, a_s = c.streams.video[0], c.streams.audio[0]
        assert vs.codec_context.name == "h264" and a_s.codec_context.name == "aac"
        rate, sr = float(vs.average_rate), a_s.rate
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, rate, audio, sr


def test_layout_and_decoding(first, work):
    doc = json.loads((first / "samples.json").read_text())
    assert doc["complete"] is True and doc["format"] == "avbench-samples"
    assert [s["index"] for s in doc["samples"]] == [0, 1, 2] and [s["seed"] for s in doc["samples"]] == [0, 1, 2]
    assert doc["checkpoint"]["sha256"] == sha256_file(work / "model.pt")
    assert doc["sampler"]["name"] == "dpmpp-3s" and len(doc["sampler"]["timesteps"]) == 3
    assert doc["sampler"]["spacing"] == "logsnr"  # the registry's default for DPM-Solver++, recorded
    assert doc["sampler"]["training_steps"] == 100 and doc["checkpoint"]["weights"] == "ema"
    for i in range(3):
        frames, rate, audio, sr = decode(first / f"video/{i}.mp4")
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and rate == 10 and sr == 16000
        assert abs(len(audio) - AUDIO) <= 1024  # AAC pads to whole frames
        wav, wsr = sf.read(str(first / f"audio/{i}.wav"))
        assert wsr == 16000 and wav.shape == (AUDIO,)
        assert frames.std() > 1 and np.abs(wav).max() > 0  # not blank output


def test_same_seed_same_bytes_other_seed_other_samples(first, work):
    run(work, "again", seed=0)
    for i in range(3):
        assert (work / f"again/audio/{i}.wav").read_bytes() == (first / f"audio/{i}.wav").read_bytes()
        assert (work / f"again/video/{i}.mp4").read_bytes() == (first / f"video/{i}.mp4").read_bytes()
    # Sample i depends on seed + i only: seed 1, batch 1 reproduces sample 1 of the seed-0 run.
    run(work, "shifted", seed=1, num_samples=1, batch_size=1)
    a, _ = sf.read(str(work / "shifted/audio/0.wav"), dtype="int16")
    b, _ = sf.read(str(first / "audio/1.wav"), dtype="int16")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # batch size may move the last bit
    c, _ = sf.read(str(first / "audio/0.wav"), dtype="int16")
    assert np.abs(a.astype(int) - c.astype(int)).max() > 100


def test_resume_regenerates_only_what_is_missing(first, work):
    out = work / "resume"
    shutil.copytree(first, out)
    # Sample 2 was alone in its batch, so regenerating it alone gives the same bytes.
    (out / "video/2.mp4").unlink()
    before = (out / "audio/0.wav").stat().st_mtime_ns
    run(work, "resume", seed=0)
    assert (out / "video/2.mp4").read_bytes() == (first / "video/2.mp4").read_bytes()
    assert (out / "audio/0.wav").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other settings"):
        run(work, "resume", seed=0, sampler="ddim")


def test_super_resolution_pass(work):
    doc = run(work, "sr", num_samples=1, steps=2, sr_checkpoint=work / "sr.pt", sr_steps=2)
    frames, rate, _, _ = decode(work / "sr/video/0.mp4")
    assert frames.shape == (FRAMES, 64, 64, 3) and rate == 10
    assert doc["sr_sampler"]["name"] == "ddim" and doc["video"]["height"] == 64
    assert doc["sr_checkpoint"]["kind"] == "superres"


def test_audio_to_video_keeps_the_given_audio(first, work):
    doc = run(work, "a2v", num_samples=2, sampler="ddim", condition_audio=first / "audio", guidance_scale=1.0)
    assert doc["conditioning"]["mode"] == "audio-to-video"
    assert [s["condition"] for s in doc["samples"]] == ["0.wav", "1.wav"]
    for i in range(2):
        got, _ = sf.read(str(work / f"a2v/audio/{i}.wav"), dtype="int16")
        want, _ = sf.read(str(first / f"audio/{i}.wav"), dtype="int16")
        assert np.array_equal(got, want)


def test_video_to_audio_uses_the_given_video(first, work):
    doc = run(work, "v2a", num_samples=1, sampler="dpmpp-2m", condition_video=first / "video")
    assert doc["conditioning"]["mode"] == "video-to-audio"
    got, *_ = decode(work / "v2a/video/0.mp4")
    want, *_ = decode(first / "video/0.mp4")
    other, *_ = decode(first / "video/1.mp4")
    # Re-encoded (H.264 loses detail on this noise-like content), otherwise the given frames.
    dist = np.abs(got.astype(int) - want.astype(int)).mean()
    assert dist < 0.25 * np.abs(got.astype(int) - other.astype(int)).mean()


def test_bad_options_fail_with_one_line(work, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        run(work, "x", condition_audio=tmp_path, condition_video=tmp_path)
    with pytest.raises(FileNotFoundError, match="no .wav/.flac files"):
        run(work, "x", condition_audio=tmp_path)
    with pytest.raises(SampleError, match="^--sampler 'euler' is not a sampler"):
        run(work, "x", sampler="euler")
    with pytest.raises(SampleError, match="^--eta does not apply to --sampler dpmpp-3s"):
        run(work, "x", eta=0.5)
    with pytest.raises(ValueError, match="choose 1..100"):
        run(work, "x", steps=500)


def test_cli(work):
    from avbench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sample", "--help"])
    assert res.exit_code == 0 and "runs `joint`" in " ".join(res.output.split())
    res = runner.invoke(app, ["sample", "joint", "--help"])
    assert res.exit_code == 0 and "--condition-audio" in res.output
    out = work / "cli"
    res = runner.invoke(app, ["sample", "--checkpoint", str(work / "model.pt"), "--out", str(out),
                              "--num-samples", "1", "--steps", "2", "--sampler", "ddim", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "video/0.mp4").is_file() and (out / "audio/0.wav").is_file()
    res = runner.invoke(app, ["sample", "--checkpoint", str(work / "model.pt"), "--out", str(work / "cli2"),
                              "--diffusion-steps", "1000", "--no-progress"])
    assert res.exit_code == 2 and "trained with 100 diffusion steps" in res.output
