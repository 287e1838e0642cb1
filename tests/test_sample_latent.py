"""Sampling a latent MM-UNet (`avbench sample` on a `latent` checkpoint): latents decoded by the codec the
checkpoint names into the joint pipeline's OUT layout, that `avbench eval` accepts; V→A by replacement in
latent space; the audio latent layout (crop/pad and its undoing) pinned.

The checkpoints are tiny random MM-UNets on the `tiny-audioldm2` test codec (seeded random diffusers
AutoencoderKL + SpeechT5HifiGan written to disk and loaded back, nothing downloaded): its 2-D audio latent
is flattened to 128 channels at 25 Hz, 40 latents for 16 frames, which the U-Net crops to 32.
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from support.evalkit import eval_av_align, make_clip
from typer.testing import CliRunner

from avbench.cli import app
from avbench.diffusion.schedules import DiffusionConfig
from avbench.media import to_uint8_frames, write_mp4
from avbench.models.checkpoint import load_for_sampling, save_checkpoint
from avbench.models.mmunet import LatentMMUNetConfig, MMUNet, audio_crop_for

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

CODEC = "tiny-audioldm2"
FRAMES, SIZE, SR, FPS = 16, 64, 16000, 10


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private avbench cache: the tiny codec's files are written there once for this module."""
    path = tmp_path_factory.mktemp("avbench-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVBENCH_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def codec(cache):
    from avbench.models.latent.codec import load_codec

    return load_codec(CODEC)


@pytest.fixture(scope="module")
def checkpoint(codec, tmp_path_factory):
    video = (FRAMES, codec.video.channels, SIZE // codec.video.downsample, SIZE // codec.video.downsample)
    audio = (codec.audio.channels, codec.audio_latents(FRAMES * SR // FPS))
    cfg = LatentMMUNetConfig.tiny().fitted(video, audio, codec=CODEC, pixel_size=SIZE)
    g = torch.Generator().manual_seed(0)
    model = MMUNet(cfg)
    with torch.no_grad():
        for p in model.parameters():  # the output convs start at zero, which would make every ε̂ 0
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(path, model, kind="latent", config=cfg, diffusion=DiffusionConfig(steps=100))


def _sample(checkpoint, out, *extra, n: int = 2):
    return CliRunner().invoke(app, ["sample", "--checkpoint", str(checkpoint), "--out", str(out), "--num-samples", str(n),
                                    "--batch-size", str(n), "--sampler", "ddim", "--steps", "2", "--no-progress", *extra])


def _frames(path):
    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]), float(rate)


def test_audio_latent_layout_is_pinned():
    # sd-mmaudio16k: 1.6 s at 31.25 Hz = 50 latents; the un-downsampled audio branch needs a multiple of 16
    assert audio_crop_for(50, 16, 16) == (1, 1)
    real = LatentMMUNetConfig.latent().fitted((16, 4, 32, 32), (20, 50), codec="sd-mmaudio16k", pixel_size=256)
    assert (real.audio_size, real.audio_crop, real.audio_latent_length) == ((20, 48), (1, 1), 50)
    # every frame's 3-latent chunk starts within one latent (32 ms) of the frame's audio: 100 ms per frame
    starts_ms = [(3 * k + real.audio_crop[0]) * 32 for k in range(16)]
    assert max(abs(s - 100 * k) for k, s in enumerate(starts_ms)) == 32
    # AudioLDM 2 (25 Hz): 40 latents, a tie between 32 and 48 is a crop; 10 latents pad to 16
    assert audio_crop_for(40, 16, 16) == (4, 4) and audio_crop_for(10, 16, 16) == (-3, -3)
    assert audio_crop_for(51, 16, 16) == (1, 2) and audio_crop_for(50, 16, 64) == (-7, -7)
    # fit drops the ends; unfit restores the length by repeating the edge latents; a pad is undone exactly
    a = torch.arange(2 * 50, dtype=torch.float32).reshape(1, 2, 50)
    fitted = real.fit_audio(a)
    assert torch.equal(fitted, a[..., 1:49])
    back = real.unfit_audio(fitted)
    assert torch.equal(back[..., 1:49], a[..., 1:49]) and torch.equal(back[..., 0], a[..., 1])
    assert torch.equal(back[..., 49], a[..., 48])
    padded = LatentMMUNetConfig.tiny().fitted((16, 4, 8, 8), (2, 10), codec="x", pixel_size=64)
    assert padded.audio_crop == (-3, -3) and padded.fit_audio(a[..., :10]).shape[-1] == 16
    assert torch.equal(padded.unfit_audio(padded.fit_audio(a[..., :10])), a[..., :10])
    with pytest.raises(ValueError, match="expected 50"):
        real.fit_audio(a[..., :49])
    # the full-size network: the seed's widths on 32x32 latents
    with torch.device("meta"):
        assert MMUNet(real).num_parameters() == 143_232_024


def test_latent_checkpoint_samples_decode_to_the_joint_layout_and_eval_accepts_them(checkpoint, codec, tmp_path,
                                                                                   one_thread):
    out = tmp_path / "out"
    res = _sample(checkpoint, out)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text())
    assert doc["checkpoint"]["kind"] == "latent" and doc["complete"]
    assert doc["video"] == {"fps": FPS, "frames": FRAMES, "height": SIZE, "width": SIZE, "codec": "h264+aac"}
    assert doc["audio"]["samples"] == FRAMES * SR // FPS and doc["sampler"]["clip"] is False
    lat = doc["latent"]
    assert lat["codec"]["name"] == CODEC and lat["codec"]["video"]["sha256"] == codec.describe()["video"]["sha256"]
    assert lat["audio_latent"] == {"codec_length": 40, "model_length": 32, "channels": 128, "crop": [4, 4],
                                   "undo": "edge latents repeated before decoding"}
    for i in range(2):
        frames, rate = _frames(out / "video" / f"{i}.mp4")
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and rate == FPS
        wave, sr = sf.read(out / "audio" / f"{i}.wav")
        assert sr == SR and wave.shape == (FRAMES * SR // FPS,)
    assert not np.array_equal(_frames(out / "video" / "0.mp4")[0], _frames(out / "video" / "1.mp4")[0])

    rec = eval_av_align(out, tmp_path / "r", "latent")
    assert rec["protocols"]["av_align"]["n_clips"] == 2 and not rec["errors"]


def test_video_to_audio_replaces_the_video_latent_with_the_encoded_condition(checkpoint, codec, tmp_path, one_thread):
    cond = tmp_path / "cond"
    clip, _ = make_clip(3, "b", size=SIZE, frames=FRAMES)
    write_mp4(cond / "a.mp4", clip, None, FPS, SR)
    out = tmp_path / "v2a"
    res = _sample(checkpoint, out, "--condition-video", str(cond), n=1)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text())
    assert doc["conditioning"]["mode"] == "video-to-audio"
    # the sampler ends on the condition's latent, so the video is the codec's reconstruction of the condition
    with av.open(str(cond / "a.mp4")) as c:
        given = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    pixels = torch.from_numpy(given).permute(0, 3, 1, 2).float()[None] / 127.5 - 1
    latent = codec.encode_video(pixels)
    got, _ = _frames(out / "video" / "0.mp4")

    def as_written(lat, name):  # through the same H.264 writer: the random codec's frames compress poorly
        write_mp4(tmp_path / name, to_uint8_frames(codec.decode_video(lat)[0].clamp(-1, 1)), None, FPS, SR)
        return _frames(tmp_path / name)[0].astype(float)

    err = np.abs(got - as_written(latent, "expected.mp4")).mean()
    far = np.abs(got - as_written(latent + 0.05 * torch.randn(latent.shape), "other.mp4")).mean()
    assert err < 1.0 and err < 0.2 * far, (err, far)
    wave, _ = sf.read(out / "audio" / "0.wav")
    assert wave.shape == (FRAMES * SR // FPS,)  # (the tiny random vocoder's output is below one PCM step)


def test_audio_to_video_encodes_the_condition_audio_first(checkpoint, codec, tmp_path, one_thread):
    cond = tmp_path / "cond"
    cond.mkdir()
    _, audio = make_clip(4, "a", size=SIZE, frames=FRAMES)
    sf.write(cond / "a.wav", audio, SR, subtype="PCM_16")
    res = _sample(checkpoint, tmp_path / "a2v", "--condition-audio", str(cond), n=1)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a2v" / "samples.json").read_text())
    assert doc["conditioning"]["mode"] == "audio-to-video" and doc["samples"][0]["condition"] == "a.wav"
    frames, _ = _frames(tmp_path / "a2v" / "video" / "0.mp4")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)


def test_latent_checkpoint_loads_as_its_kind_and_refuses_super_resolution(checkpoint, tmp_path):
    _, info = load_for_sampling(checkpoint, expect_kind=("mmunet", "latent"))
    assert info["kind"] == "latent" and info["config"]["codec"] == CODEC and info["config"]["audio_crop"] == [4, 4]
    res = _sample(checkpoint, tmp_path / "sr", "--sr-checkpoint", str(checkpoint))
    assert res.exit_code != 0 and "latent model decodes at its own size" in res.output
    res = CliRunner().invoke(app, ["sample", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"),
                                   "--audio-vae", str(tmp_path / "nope"), "--no-progress", "--num-samples", "1"])
    assert res.exit_code != 0 and "nope" in res.output and "--audio-vae" in res.output
