"""MMAudio audio codec port: mel front end, 1-D VAE, BigVGAN-v1 and the 44.1 kHz vocoder mapping.

Fixtures (tests/fixtures/mmaudio/codec, README there) come from the original code at commit 974010a.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.errors import AvbenchError, CheckpointError
from avbench.models.mmaudio.bigvgan import BIGVGAN_CONFIGS, BigVGAN, load_vocoder, vocoder44_from_original
from avbench.models.mmaudio.codec import MMAudioAudioCodec, random_audio_codec
from avbench.models.mmaudio.mel import MEL_CONFIGS, MelConverter
from avbench.models.mmaudio.vae import AUDIO_VAES, AudioVAE, AudioVAEConfig, load_audio_vae
from avbench.models.state_dict import compare_to_listing

FIX = Path(__file__).parent / "fixtures" / "mmaudio" / "codec"
TOL = 1e-5


@pytest.fixture(scope="module")
def fx():
    with np.load(FIX / "tiny.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def _sd(fx, part):
    prefix = f"{part}/sd/"
    return {k[len(prefix):]: v for k, v in fx.items() if k.startswith(prefix)}


def _listing(name):
    return json.loads((FIX / "listings" / name).read_text())


def _rel(got, want):
    assert got.shape == want.shape
    return ((got - want).abs().max() / want.abs().max()).item()


# ---- state-dict listings of the released variants ------------------------------------------------
@pytest.mark.parametrize("mode, listing", [("16k", "vae_v1-16.json"), ("44k", "vae_v1-44.json")])
def test_vae_keys_and_shapes_equal_released_listing(mode, listing):
    with torch.device("meta"):
        vae = AudioVAE(mode)
    assert compare_to_listing(vae.state_dict(), _listing(listing)) == []


def test_bigvgan_16k_keys_and_shapes_equal_released_listing():
    with torch.device("meta"):
        voc = BigVGAN("16k")
    assert compare_to_listing(voc.state_dict(), _listing("bigvgan_v1_16k.json")) == []
    assert voc.cfg.hop == MEL_CONFIGS["16k"].hop


def test_vocoder44_mapping_turns_original_listing_into_diffusers_keys():
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        target = diffusers.MMAudioVocoder()
        original = {k: torch.empty(s) for k, s in _listing("bigvgan_v2_44k_weightnorm.json")}
        mapped = vocoder44_from_original({"generator": original})
    want = [[k, list(v.shape)] for k, v in target.state_dict().items()]
    assert compare_to_listing(mapped, want) == []
    assert compare_to_listing(target.state_dict(), _listing("bigvgan_v2_44k_folded.json")) == []


# ---- parity with the original on tiny seeded configs ------------------------------------------------
@pytest.mark.parametrize("mode", ["16k", "44k"])
def test_mel_converter_matches_original_at_real_config(fx, mode):
    wave = fx[f"mel{mode}/wave"]
    mel = MelConverter(mode)(wave)
    assert mel.shape == (2, MEL_CONFIGS[mode].n_mels, wave.shape[1] // MEL_CONFIGS[mode].hop)
    assert _rel(mel, fx[f"mel{mode}/mel"]) <= TOL


def test_vae_encoder_and_decoder_match_original(fx, one_thread):
    vae = AudioVAE("tiny").eval()
    vae.load_state_dict(_sd(fx, "vae"), strict=True)
    with torch.no_grad():
        mean, logvar = vae.encode(fx["vae/mel_in"])
        dec = vae.decode(fx["vae/z_in"])
    assert _rel(mean, fx["vae/mean"]) <= TOL
    assert _rel(logvar, fx["vae/logvar"]) <= TOL
    assert _rel(dec, fx["vae/dec"]) <= TOL
    assert mean.shape[-1] == fx["vae/mel_in"].shape[-1] // 2  # one 2x time downsampling


def test_bigvgan_v1_matches_original(fx, one_thread):
    voc = BigVGAN("tiny").eval()
    voc.load_state_dict(_sd(fx, "bigvgan"), strict=True)
    voc.remove_weight_norm()
    assert not any("parametrizations" in k for k in voc.state_dict())
    with torch.no_grad():
        wave = voc(fx["bigvgan/mel_in"])
    assert wave.shape == (1, 1, fx["bigvgan/mel_in"].shape[-1] * BIGVGAN_CONFIGS["tiny"].hop)
    assert _rel(wave, fx["bigvgan/wave"]) <= TOL


def test_vocoder44_mapping_matches_original_bigvgan_v2(fx, one_thread):
    diffusers = pytest.importorskip("diffusers")
    meta = json.loads((FIX / "meta.json").read_text())["tiny_bigvgan_v2"]
    voc = diffusers.MMAudioVocoder(
        num_mels=meta["num_mels"], upsample_initial_channel=meta["upsample_initial_channel"],
        upsample_rates=tuple(meta["upsample_rates"]), upsample_kernel_sizes=tuple(meta["upsample_kernel_sizes"]),
        resblock_kernel_sizes=tuple(meta["resblock_kernel_sizes"]),
        resblock_dilation_sizes=tuple(map(tuple, meta["resblock_dilation_sizes"]))).eval()
    voc.load_state_dict(vocoder44_from_original({"generator": _sd(fx, "bigvgan2")}), strict=True)
    with torch.no_grad():
        wave = voc(fx["bigvgan2/mel_in"]).sample
    assert _rel(wave, fx["bigvgan2/wave"]) <= TOL


# ---- loaders ----------------------------------------------------------------------------------------
def _legacy_weight_norm_names(sd):
    out = {}
    for k, v in sd.items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        out[k.replace("parametrizations.weight.original1", "weight_v")] = v
    return out


def test_load_vocoder_accepts_generator_files_in_every_weight_norm_layout(fx, tmp_path, one_thread):
    ref = fx["bigvgan/wave"]
    raw = _sd(fx, "bigvgan")
    folded = BigVGAN("tiny")
    folded.load_state_dict(raw)
    layouts = {
        "parametrizations": {"generator": raw},
        "weight_g_v": {"generator": _legacy_weight_norm_names(raw)},
        "folded": folded.remove_weight_norm().state_dict(),
    }
    for name, content in layouts.items():
        path = tmp_path / f"{name}.pt"
        torch.save(content, path)
        voc = load_vocoder("tiny", path)
        with torch.no_grad():
            assert _rel(voc(fx["bigvgan/mel_in"]), ref) <= TOL, name


def test_load_audio_vae_strict_and_decode_only(fx, tmp_path, one_thread):
    path = tmp_path / "vae.pth"
    torch.save(_sd(fx, "vae"), path)
    vae = load_audio_vae("tiny", path)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())
    with torch.no_grad():
        assert _rel(vae.encode(fx["vae/mel_in"]).mean, fx["vae/mean"]) <= TOL
    dec_only = load_audio_vae("tiny", path, with_encoder=False)
    assert not any(k.startswith("encoder.") for k in dec_only.state_dict())
    with torch.no_grad():
        assert _rel(dec_only.decode(fx["vae/z_in"]), fx["vae/dec"]) <= TOL
    with pytest.raises(RuntimeError, match="without its encoder"):
        dec_only.encode(fx["vae/mel_in"])


def test_loaders_name_the_file_and_the_mismatch(fx, tmp_path):
    path = tmp_path / "tiny_vae.pth"
    torch.save(_sd(fx, "vae"), path)
    with pytest.raises(CheckpointError) as err:
        load_audio_vae("16k", path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "wrong shape (first: encoder.conv_in.weight [" in msg
    with pytest.raises(CheckpointError) as err:
        load_vocoder("16k", path)  # a VAE file given as the vocoder
    assert str(path) in str(err.value) and "BigVGAN 16k" in str(err.value)
    with pytest.raises(AvbenchError) as err:
        load_vocoder("16k", tmp_path / "best_netG.pt")
    assert "best_netG.pt" in str(err.value)


# ---- codec ------------------------------------------------------------------------------------------
def test_released_modes_frame_rates():
    rates = {}
    for mode in ("16k", "44k"):
        mel, vae = MEL_CONFIGS[mode], AUDIO_VAES[mode]
        assert vae.mel_bins == mel.n_mels
        rates[mode] = mel.sample_rate / (mel.hop * vae.time_downsampling)
    assert rates["16k"] == 31.25 and AUDIO_VAES["16k"].latent_channels == 20
    assert math.isclose(rates["44k"], 44_100 / 1024) and AUDIO_VAES["44k"].latent_channels == 40
    assert BIGVGAN_CONFIGS["16k"].hop == MEL_CONFIGS["16k"].hop


def test_codec_round_trip_shapes_and_determinism(one_thread):
    codec = random_audio_codec(seed=3)
    assert codec.sample_rate == 16_000 and codec.samples_per_latent == 512 and codec.latent_rate == 31.25
    g = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(2, 25_600, generator=g)  # one 1.6 s training clip
    latent = codec.encode(wave)
    assert latent.shape == (2, AUDIO_VAES["tiny"].latent_channels, 50) == (2, 4, codec.num_latents(25_600))
    assert torch.equal(latent, codec.encode(wave))  # posterior mean: deterministic
    assert codec.encode(wave[:, :12_800]).shape[-1] == 25  # 0.8 s → 25 latents
    assert codec.encode(wave[:, :12_800 + 511]).shape[-1] == 25  # a partial latent frame is dropped
    out = codec.decode(latent)
    assert out.shape == (2, 25_600) and out.abs().max() <= 1.0 and torch.isfinite(out).all()
    assert torch.equal(random_audio_codec(seed=3).encode(wave), latent)
    assert not torch.equal(random_audio_codec(seed=4).encode(wave), latent)


def test_codec_with_diffusers_vocoder_44k(one_thread):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vocoder = diffusers.MMAudioVocoder(num_mels=128, upsample_initial_channel=16, upsample_rates=(8, 8, 8),
                                       upsample_kernel_sizes=(16, 16, 16), resblock_kernel_sizes=(3,),
                                       resblock_dilation_sizes=((1, 3, 5),)).eval()
    vae = AudioVAE(AudioVAEConfig(mel_bins=128, latent_channels=4, hidden=8)).eval()
    codec = MMAudioAudioCodec(vae, vocoder, MelConverter("44k"))
    wave = 0.3 * torch.randn(1, 44_100 // 4)
    latent = codec.encode(wave)
    assert latent.shape == (1, 4, (44_100 // 4) // 1024)
    assert codec.decode(latent).shape == (1, latent.shape[-1] * 1024)


def test_posterior_sampling_is_seeded(fx):
    vae = AudioVAE("tiny").eval()
    vae.load_state_dict(_sd(fx, "vae"))
    with torch.no_grad():
        post = vae.encode(fx["vae/mel_in"])
    a = post.sample(torch.Generator().manual_seed(1))
    b = post.sample(torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, post.mode())
