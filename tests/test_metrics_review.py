"""Review fixes in avbench/metrics: protocol details checked against the reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avbench.metrics import av_align as ava
from avbench.metrics import video_preprocess as vp
from avbench.metrics import vggish as vg


def test_google_peak_normalisation_divides_by_the_signed_max():
    # google-research AudioSetModel.extract_features: x /= max(0.1, np.amax(x)) — the signed maximum.
    rng = np.random.default_rng(0)
    wave = 0.05 * rng.standard_normal(32000)
    wave[100] = -0.9  # the largest magnitude is negative
    wave[200] = 0.3  # the largest sample
    got = vg.waveform_to_examples(wave, 16000, window_s=1.0, hop_s=0.5, peak_normalise=True)
    want = vg.waveform_to_examples(wave / 0.3, 16000, window_s=1.0, hop_s=0.5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # A clip whose samples stay below 0.1 is divided by 0.1, as in Google's code.
    quiet = -np.abs(wave) * 0.01
    np.testing.assert_allclose(vg.waveform_to_examples(quiet, 16000, 1.0, 0.5, peak_normalise=True),
                               vg.waveform_to_examples(quiet / 0.1, 16000, 1.0, 0.5), rtol=0, atol=1e-5)


def _videogpt_preprocess(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """VideoGPT `preprocess_single` for uint8 [T, H, W, 3] → [3, T, S, S] in [-1, 1], written from its description."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    _, _, h, w = x.shape
    scale = resolution / min(h, w)
    target = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
    _, _, h, w = x.shape
    top, left = (h - resolution) // 2, (w - resolution) // 2
    x = x[:, :, top : top + resolution, left : left + resolution]
    return (x.permute(1, 0, 2, 3) - 0.5) * 2.0


def test_short_side_center_crop_sets_the_short_side_exactly():
    # ⌈100·(224/100)⌉ = 225 in floats: the old code resized to 225 rows and cropped a shifted window.
    g = torch.Generator().manual_seed(0)
    for h, w in ((100, 150), (150, 100), (200, 300), (64, 96)):
        clip = torch.randint(0, 256, (1, 2, h, w, 3), generator=g, dtype=torch.uint8)
        got = vp.short_side_center_crop(clip, 224)
        want = _videogpt_preprocess(clip[0], 224)[None]
        assert got.shape == (1, 3, 2, 224, 224)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_av_align_window_is_open_as_in_tempotokens():
    fps = 10.0
    # TempoTokens: v - 1/fps < a < v + 1/fps. An onset exactly one frame before a video peak is no hit.
    assert ava.iou_score(np.array([0.8]), np.array([0.9]), fps) == 0.0
    assert ava.iou_score(np.array([1.0]), np.array([0.9]), fps) == 0.0
    assert ava.iou_score(np.array([0.832]), np.array([0.9]), fps) == 1.0


def test_mmdiffusion_64px_step_letterboxes_like_its_loader():
    # MM-Diffusion `process_video`: ratio = min(64/h, 64/w), resize to ⌊side·ratio⌋, pad with black.
    g = torch.Generator().manual_seed(1)
    wide = torch.randint(1, 256, (2, 3, 32, 64, 3), generator=g, dtype=torch.uint8)
    out = vp.to_square_uint8(wide, 64)
    assert out.shape == (2, 3, 64, 64, 3) and out.dtype == torch.uint8
    torch.testing.assert_close(out[:, :, 16:48], wide)  # ratio 1: the frame itself, centred
    assert out[:, :, :16].eq(0).all() and out[:, :, 48:].eq(0).all()
    tall = torch.randint(1, 256, (1, 2, 100, 50, 3), generator=g, dtype=torch.uint8)
    out = vp.to_square_uint8(tall, 64)  # ratio 0.64 → 64×32, 16 black columns each side
    assert out[:, :, :, :16].eq(0).all() and out[:, :, :, 48:].eq(0).all()
    assert out[:, :, :, 16:48].gt(0).float().mean() > 0.9
    square = torch.randint(0, 256, (1, 2, 64, 64, 3), generator=g, dtype=torch.uint8)
    assert vp.to_square_uint8(square, 64) is square


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (TF32 exists only there)")
def test_vggish_on_gpu_matches_fp32_cpu():
    from avbench.metrics.extract import VGGishFeatures

    ex = vg.waveform_to_examples(np.random.default_rng(0).standard_normal(16000 * 4) * 0.1, 16000)
    cpu = VGGishFeatures(device=torch.device("cpu"), allow_random=True)
    gpu = VGGishFeatures(device=torch.device("cuda"), allow_random=True)
    np.testing.assert_allclose(gpu(ex), cpu(ex), rtol=1e-4, atol=1e-4)
