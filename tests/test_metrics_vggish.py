"""VGGish front end and network: mel placement, example framing, torchvggish-compatible state dicts."""

import numpy as np
import pytest
import torch

from avbench.metrics import vggish as vg

TORCHVGGISH_KEYS = {
    f"{part}.{i}.{p}" for part, idxs in (("features", (0, 3, 6, 8, 11, 13)), ("embeddings", (0, 2, 4)))
    for i in idxs for p in ("weight", "bias")
}


def _sine(freq, seconds=2.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return 0.5 * np.sin(2 * np.pi * freq * t)


def test_log_mel_sine_energy_lands_in_the_right_band():
    mm = vg.mel_matrix()
    hz = np.linspace(0, 8000, 257)
    for freq in (500.0, 1000.0, 4000.0):  # on FFT bin centres (31.25 Hz apart), so no leakage ambiguity
        band = vg.log_mel(_sine(freq)).mean(axis=0).argmax()
        # the band whose triangle weights the sine's FFT bin most
        assert band == mm[np.abs(hz - freq).argmin()].argmax()
        centre = hz[mm[:, band].argmax()]
        assert abs(centre - freq) / freq < 0.15


def test_examples_shape_and_framing():
    ex = vg.waveform_to_examples(_sine(440.0, seconds=3.0), 16000)
    # 3 s → 1 + (48000-400)//160 = 298 frames → 3 examples of 96 frames, remainder dropped
    assert ex.shape == (3, 1, 96, 64) and ex.dtype == np.float32
    assert ex.min() >= np.log(0.01) - 1e-6  # log(mel + 0.01) is bounded below
    # stereo at 44.1 kHz: channel mean, then soxr to 16 kHz gives the same band
    stereo = np.stack([_sine(1000.0, 2.0, 44100)] * 2, axis=1)
    ex2 = vg.waveform_to_examples(stereo, 44100)
    assert ex2.shape == (2, 1, 96, 64)
    assert ex2[0, 0].mean(0).argmax() == vg.log_mel(_sine(1000.0)).mean(0).argmax()


def test_mel_matrix_matches_tf_conventions():
    mm = vg.mel_matrix()
    assert mm.shape == (257, 64)
    assert (mm[0] == 0).all()  # DC bin dropped
    hz = np.linspace(0, 8000, 257)
    active = hz[mm.sum(axis=1) > 0]
    assert active.min() > 125.0 and active.max() < 7500.0


def test_state_dict_round_trip_with_torchvggish_keys(tmp_path):
    model = vg.random_vggish(seed=3)
    sd = model.state_dict()
    assert set(sd) == TORCHVGGISH_KEYS
    assert sd["embeddings.0.weight"].shape == (4096, 12288) and sd["features.13.weight"].shape == (512, 512, 3, 3)
    torch.save(sd, tmp_path / "vggish.pth")
    loaded = vg.load_vggish(str(tmp_path / "vggish.pth"))
    x = torch.from_numpy(vg.waveform_to_examples(_sine(500.0), 16000))
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    assert a.shape == (2, 128)
    torch.testing.assert_close(a, b)
    assert (a < 0).any()  # pre-activation embedding: no final ReLU


def test_flatten_uses_tf_nhwc_order():
    model = vg.random_vggish(seed=0)
    x = torch.randn(1, 1, 96, 64)
    with torch.inference_mode():
        conv = model.features(x)  # [1, 512, 6, 4]
        nhwc = conv.permute(0, 2, 3, 1).reshape(1, -1)
        want = model.embeddings(nhwc)
        wrong = model.embeddings(conv.reshape(1, -1))
        got = model(x)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, wrong)


def test_google_profile_windows_and_peak_normalisation():
    wave = 0.05 * _sine(1000.0, seconds=1.6)
    ex = vg.waveform_to_examples(wave, 16000, window_s=1.0, hop_s=0.5, peak_normalise=True)
    assert ex.shape == (2, 1, 96, 64)  # windows at 0 s and 0.5 s (1.0 s + 0.5 s ≤ 1.6 s)
    # peak normalisation divides by max(0.1, peak): a 0.05-peak sine is scaled by 10, i.e. +log(10) in the
    # log-mel of the magnitude spectrum (up to the +0.01 offset)
    plain = vg.waveform_to_examples(wave[:16000], 16000)
    band = plain[0, 0].mean(0).argmax()
    assert ex[0, 0, :, band].mean() - plain[0, 0, :, band].mean() == pytest.approx(np.log(10.0), abs=0.02)
    np.testing.assert_allclose(vg.waveform_to_examples(wave[:16000], 16000, 1.0, 0.5), plain)
