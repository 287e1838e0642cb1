"""The 44.1 kHz MMAudio path end to end through the CLI, with the test-only `tiny-44k` variant: a tiny
network at the 44.1 kHz latent rate, a tiny 128-mel VAE in v1-44.pth's layout and diffusers'
`MMAudioVocoder` at a toy size, written as BigVGAN-v2's bigvgan_generator.pt (seeded random weights by
avbench.sample.tiny; nothing downloaded). `avbench sample v2a` and `avbench sample text2av` must bring the
44.1 kHz audio to the metrics' 16 kHz with soxr and say so."""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from support.evalkit import eval_av_align
from support.mmaudiokit import write_tiny_mmaudio
from typer.testing import CliRunner

from avbench.cli import app
from avbench.curate.audiotrack import SOXR_QUALITY
from avbench.errors import CheckpointError
from avbench.models.mmaudio.bigvgan import load_vocoder
from avbench.sample.mmaudio import generate_audio, load_bundle, resample_audio
from avbench.sample.v2a import list_clips, read_frames

pytest.importorskip("diffusers")  # the 44.1 kHz vocoder is diffusers' (the text2av extra)


@pytest.fixture(scope="module")
def tiny44(tmp_path_factory):
    return write_tiny_mmaudio(tmp_path_factory.mktemp("tiny-44k"), seed=0, variant="tiny-44k")


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "samples.json"}


def test_tiny44k_loads_the_44k_parts_and_refuses_a_16k_network(tiny44, tmp_path, one_thread):
    bundle = load_bundle("tiny-44k", paths=tiny44)
    assert bundle.sample_rate == 44100 and type(bundle.vocoder).__name__ == "MMAudioVocoder"
    assert bundle.vae.cfg.mel_bins == 128 and bundle.network.latent_dim == bundle.vae.cfg.latent_channels == 8
    # the vocoder file is in BigVGAN-v2's layout (weight norm as parametrizations), hop 512 = the 44.1 kHz mel's
    raw = torch.load(tiny44["vocoder"], weights_only=True)
    assert "conv_pre.parametrizations.weight.original0" in raw["generator"]
    mel = torch.zeros(1, 128, 3)
    assert load_vocoder("tiny44", tiny44["vocoder"])(mel).sample.shape == (1, 1, 3 * 512)
    wave, rate, info = generate_audio(bundle, np.zeros((16, 32, 32, 3), np.uint8), 10, "", 1.6, seed=1, steps=1)
    assert rate == 44100 and wave.shape == (70560,) and info["sequence_lengths"]["latent"] == 69
    sixteen = write_tiny_mmaudio(tmp_path / "16k", seed=0)
    with pytest.raises(CheckpointError, match="not a tiny-44k MMAudio network"):
        load_bundle("tiny-44k", paths={**tiny44, "network": sixteen["network"]})


def test_v2a_tiny44k_resamples_to_16k_with_soxr_and_eval_accepts_it(demo_dataset, tiny44, tmp_path, monkeypatch,
                                                                    one_thread):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    common = ["sample", "v2a", "--videos", f"{demo_dataset}:test", "--audio-model", "tiny-44k", "--weights-dir",
              str(tiny44["network"].parent), "--audio-steps", "2", "--num-samples", "2", "--seed", "5",
              "--duration", "1.6", "--device", "cpu", "--no-progress"]
    for name in "ab":
        res = CliRunner().invoke(app, [*common, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    a = _files(tmp_path / "a")
    assert sorted(a) == ["audio/0.wav", "audio/1.wav", "video/0.mp4", "video/1.mp4"]
    assert a == _files(tmp_path / "b")  # same seed: byte-identical media

    doc = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert doc["complete"] is True and doc["model"]["name"] == "tiny-44k" and doc["model"]["sample_rate"] == 44100
    assert doc["audio"] == {"sample_rate": 16000, "model_sample_rate": 44100, "format": "wav pcm16",
                            "resampler": f"soxr {SOXR_QUALITY}"}
    assert all(len(w["sha256"]) == 64 for w in doc["model"]["weights"].values())  # the vocoder file too
    row = doc["samples"][0]
    assert (row["duration_s"], row["fps"], row["frames"]) == (1.6, 10, 16)
    assert row["model_samples"] == 69 * 1024  # 69 latents of 1,024 samples at 44.1 kHz
    wav, sr = sf.read(tmp_path / "a" / "audio" / "0.wav", dtype="float32")
    assert sr == 16000 and wav.shape == (25600,) and np.abs(wav).max() > 0

    # the wav is the model's 44.1 kHz wave through soxr (to PCM16 rounding), not a re-run at 16 kHz
    clip = list_clips(f"{demo_dataset}:test")[0][0]
    frames, fps = read_frames(clip, 1.6)
    wave, rate, _ = generate_audio(load_bundle("tiny-44k", paths=tiny44), frames, fps, "", 1.6, seed=5, steps=2)
    want, _ = resample_audio(wave, rate, 25600)
    assert rate == 44100 and np.abs(wav - want).max() <= 1.0 / 32768 + 1e-6

    rec = eval_av_align(tmp_path / "a", tmp_path / "results", "v2a44", "--num-clips", "2", "--allow-small",
                        "--device", "cpu")
    assert rec["counts"]["generated_clips"] == 2 and np.isfinite(rec["scores"]["av_align"])


def test_text2av_tiny44k_writes_native_44k_and_benchmark_16k(tiny44, tmp_path_factory, tmp_path, one_thread):
    from support.cogvideoxkit import TINY_FRAMES, write_tiny_cogvideox

    cog = write_tiny_cogvideox(tmp_path_factory.mktemp("cogvideox44") / "tiny", seed=0)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a crowd at the concert\n", encoding="utf-8")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "sample", "text2av", "--prompts", str(prompts), "--out", str(out), "--video-model", str(cog),
        "--frames", str(TINY_FRAMES), "--video-steps", "2", "--audio-model", "tiny-44k", "--weights-dir",
        str(tiny44["network"].parent), "--audio-steps", "2", "--size", "64", "--seed", "3", "--device", "cpu",
        "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text(encoding="utf-8"))
    assert doc["audio_model"]["name"] == "tiny-44k" and doc["native"]["sample_rate"] == 44100
    assert doc["audio"]["rate_in"] == 44100 and doc["audio"]["resampler"] == f"soxr {SOXR_QUALITY}"
    r = doc["samples"][0]
    native, nrate = sf.read(str(out / r["native_audio"]), dtype="float32")
    assert nrate == 44100 and native.shape == (round(2.125 * 44100),)  # 17 frames at 8 fps
    with av.open(str(out / r["native_video"])) as c:
        assert (c.streams.video[0].average_rate, c.streams.audio[0].rate) == (8, 44100)
    bench, brate = sf.read(str(out / r["audio"]), dtype="float32")
    assert brate == 16000 and bench.shape == (21 * 1600,) and np.abs(bench).max() > 0
    with av.open(str(out / r["video"])) as c:
        assert (c.streams.video[0].average_rate, c.streams.audio[0].rate) == (10, 16000)
    # the benchmark wav is the native wave through soxr (both PCM16), fitted to the 21 benchmark frames
    want, _ = resample_audio(native, 44100, 21 * 1600)
    assert np.abs(bench - want).max() <= 3.0 / 32768
