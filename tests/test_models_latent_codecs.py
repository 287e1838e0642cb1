"""Latent codecs (avbench/models/latent/): shapes, alignment and layout with the tiny codecs written to disk,
the AudioLDM mel front end against librosa, and the one-line-per-missing-VAE error without weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.latentkit import tiny_codec_files
from typer.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from avbench.models.latent.codec import CODECS, CodecPaths, CodecWeightsError, load_codec


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for name in ("tiny", "tiny-audioldm2"):
        paths = tiny_codec_files(tmp_path_factory.mktemp(name), name)
        out[name] = load_codec(name, paths)
    return out


@pytest.mark.parametrize("name, channels, hop, step", [("tiny", 4, 512, 8), ("tiny-audioldm2", 128, 640, 2)])
def test_round_trip_shapes_and_rates(codecs, name, channels, hop, step):
    codec = codecs[name]
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 16, 3, 64, 64, generator=g) * 2 - 1
    z = codec.encode_video(frames)
    assert z.shape == (2, 16, 4, 8, 8) and z.dtype == torch.float32
    assert codec.decode_video(z).shape == frames.shape
    wave = torch.randn(2, 25600, generator=g) * 0.1  # 16 frames at 10 fps, 16 kHz
    a = codec.encode_audio(wave)
    assert a.shape == (2, channels, 25600 // hop)
    assert codec.decode_audio(a).shape == (2, 25600)
    assert codec.frame_step() == step and codec.audio.samples_per_latent == hop
    # a clip whose length is no whole number of latents is padded at the end: ceil(N / hop) latents
    odd = codec.encode_audio(wave[:, :16000])
    assert odd.shape[-1] == math.ceil(16000 / hop) == codec.audio_latents(16000)
    assert codec.decode_audio(odd).shape[-1] == odd.shape[-1] * hop


def test_video_latent_k_is_frame_k(codecs):
    codec = codecs["tiny"]
    frames = torch.rand(1, 5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z = codec.encode_video(frames)
    for k in range(5):
        torch.testing.assert_close(z[:, k], codec.encode_video(frames[:, k : k + 1])[:, 0], rtol=0, atol=1e-5)
    assert not torch.allclose(z[:, 0], z[:, 1])


@pytest.mark.parametrize("name", ["tiny", "tiny-audioldm2"])
def test_audio_latent_span_of_frame_k(codecs, name):
    """Sound only in frame k's samples [1600k, 1600(k+1)) moves the latents most inside frame k's span."""
    codec = codecs[name]
    lpf = codec.latents_per_frame(10)
    silence = torch.zeros(1, 25600)
    base = codec.encode_audio(silence)
    g = torch.Generator().manual_seed(2)
    for k in (1, 5, 9, 13):
        wave = silence.clone()
        wave[0, 1600 * k : 1600 * (k + 1)] = torch.randn(1600, generator=g) * 0.3
        change = (codec.encode_audio(wave) - base).abs()[0].sum(0)  # per latent time step
        peak = int(change.argmax())
        assert math.floor(k * lpf) - 2 <= peak < math.ceil((k + 1) * lpf) + 2, (k, peak, float(k * lpf))
    assert codec.audio_span(8, 16) == (int(8 * lpf), int(24 * lpf))
    with pytest.raises(ValueError, match="multiples"):
        codec.audio_span(1, 16) if codec.frame_step() > 1 else codec.audio_span(0, 1)


def test_audioldm2_flattened_layout_is_pinned(codecs):
    """flat[b, c·16 + f, t] = latent[b, c, t, f]: 8 VAE channels × 16 mel rows, time last."""
    from avbench.models.latent.audioldm2 import flatten_latent, unflatten_latent

    codec = codecs["tiny-audioldm2"]
    z = torch.arange(2 * 8 * 10 * 16, dtype=torch.float32).reshape(2, 8, 10, 16)
    flat = flatten_latent(z)
    assert flat.shape == (2, 128, 10)
    assert flat[1, 3 * 16 + 5, 7] == z[1, 3, 7, 5] and flat[0, 127, 0] == z[0, 7, 0, 15]
    torch.testing.assert_close(unflatten_latent(flat, 8), z)
    # the codec's own encoder output is exactly the VAE's posterior mean × scale, flattened that way
    audio = codec.audio
    wave = torch.randn(1, 6400, generator=torch.Generator().manual_seed(3)) * 0.2
    mel = audio.mel(wave).unsqueeze(1)
    assert mel.shape == (1, 1, 40, 64)  # [B, 1, T, F]: time before frequency
    want = flatten_latent(audio.vae.encode(mel).latent_dist.mean * audio.scale)
    torch.testing.assert_close(codec.encode_audio(wave), want)
    assert codec.describe()["audio"]["layout"] == "[C·F', T'] = [8·16, T'], index c·16 + f"


def test_audioldm_mel_matches_librosa():
    import librosa

    from avbench.models.latent.audioldm2 import AudioLDMMel

    wave = np.random.default_rng(4).standard_normal(16000).astype(np.float32) * 0.1
    got = AudioLDMMel()(torch.from_numpy(wave)[None])[0].numpy()  # [T, 64]
    mag = np.abs(librosa.stft(wave, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=True,
                              pad_mode="reflect"))
    mel = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0) @ mag
    want = np.log(np.maximum(mel, 1e-5)).T[: 16000 // 160]
    assert got.shape == (100, 64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_describe_records_posterior_scales_and_rates(codecs):
    d = codecs["tiny"].describe()
    assert d["posterior"] == "mean" and d["video"]["scaling_factor"] == 0.18215
    assert d["audio_latent"]["rate_hz"] == 31.25 and d["audio_latent"]["latents_per_frame"] == "25/8"
    assert d["video"]["sha256"] and d["audio"]["vae"]["tensors_sha256"]
    d2 = codecs["tiny-audioldm2"].describe()
    assert d2["audio_latent"]["rate_hz"] == 25.0 and d2["audio"]["vae"]["scaling_factor"] == pytest.approx(0.41109, 1e-4)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No avbench cache, no HF cache, hub offline, no weights variables: nothing can be found."""
    from avbench import weights

    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for spec in weights.REGISTRY.values():
        monkeypatch.delenv(spec.env, raising=False)
    # huggingface_hub fixes its cache folder at import: point it at the empty one
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("name, parts", [
    ("sd-mmaudio16k", [("stabilityai/sd-vae-ft-mse", "MIT", "--video-vae"),
                       ("v1-16.pth", "CC-BY-NC-4.0", "--audio-vae"),
                       ("best_netG.pt", "CC-BY-NC-4.0", "--vocoder")]),
    ("sd-audioldm2", [("stabilityai/sd-vae-ft-mse", "MIT", "--video-vae"),
                      ("cvssp/audioldm2/vae", "CC-BY-NC-SA-4.0", "--audio-vae"),
                      ("cvssp/audioldm2/vocoder", "CC-BY-NC-SA-4.0", "--vocoder")]),
])
def test_missing_weights_one_line_per_part(no_weights, name, parts):
    with pytest.raises(CodecWeightsError) as err:
        load_codec(name, CodecPaths())
    lines = str(err.value).splitlines()
    assert len(lines) == len(parts), lines
    for line, (ident, licence, flag) in zip(lines, parts):
        assert ident in line and licence in line and flag in line, line


def test_missing_local_folder_names_it(tmp_path):
    with pytest.raises(CodecWeightsError, match="does not exist.*--video-vae"):
        load_codec("tiny", CodecPaths(video_vae=str(tmp_path / "nope" / "vae")))


def test_wrong_mmaudio_file_is_refused_with_its_licence(no_weights, tmp_path):
    """A file that is not the released v1-16.pth fails the registry's md5 check, in a line naming the part."""
    paths = tiny_codec_files(tmp_path / "tiny", "tiny")
    with pytest.raises(CodecWeightsError) as err:
        load_codec("sd-mmaudio16k", CodecPaths(video_vae=paths.video_vae, audio_vae=paths.audio_vae,
                                               vocoder=paths.vocoder))
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all("CC-BY-NC-4.0" in line and "checksum mismatch" in line for line in lines), lines
    assert "audio VAE (MMAudio 16 kHz)" in lines[0] and "vocoder (MMAudio BigVGAN-v1 16 kHz)" in lines[1]


def test_encode_command_without_weights_exits_2(no_weights, tmp_path):
    from avbench.cli import app
    from avbench.dataset_index import INDEX_FORMAT, write_index

    root = tmp_path / "root"
    write_index(root, {"format": INDEX_FORMAT, "shards": []})  # a root: the codec is loaded before any shard
    res = CliRunner().invoke(app, ["encode", str(root), "--vae", "sd-mmaudio16k", "--size", "64"])
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()
    assert err[0].startswith("error: sd-mmaudio16k: video VAE") and len(err) == 3, err
    assert not (root / "latents").exists()
    print("\n".join(err))


def test_registry_names_the_released_configurations():
    assert {"sd-mmaudio16k", "sd-audioldm2"} <= {n for n, s in CODECS.items() if not s.test_only}
    assert {s.licences["audio"] for n, s in CODECS.items() if not s.test_only} == {"CC-BY-NC-4.0", "CC-BY-NC-SA-4.0"}


def test_loading_a_codec_draws_no_library_progress_bars(tmp_path, capfd):
    """diffusers/transformers bars ("Loading weights", "Writing model shards") stay out of the user's output
    while avbench writes and loads codec files, and the libraries' own settings are back afterwards."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog
    from transformers import SpeechT5HifiGan

    before = (dlog.get_verbosity(), tlog.get_verbosity())
    dlog.enable_progress_bar(), tlog.enable_progress_bar()
    try:
        paths = tiny_codec_files(tmp_path / "codec", "tiny-audioldm2")
        codec = load_codec("tiny-audioldm2", paths)
        assert codec.audio.channels == 128
        err = capfd.readouterr().err
        assert "Loading" not in err and "Writing" not in err and "it/s" not in err, err
        assert dlog.is_progress_bar_enabled() and tlog.is_progress_bar_enabled()
        assert (dlog.get_verbosity(), tlog.get_verbosity()) == before
        # the control: the same file loaded straight through transformers does draw its bar
        SpeechT5HifiGan.from_pretrained(f"{paths.audio_vae}/vocoder", local_files_only=True)
        assert "Loading weights" in capfd.readouterr().err
    finally:
        dlog.set_verbosity(before[0]), tlog.set_verbosity(before[1])
