"""VGGish for FAD: the TF VGGish log-mel front end and a network state-dict compatible with torchvggish.

Front end (TF `mel_features` / `vggish_input`): 16 kHz mono, 25 ms periodic-Hann frames with a 10 ms hop
(no padding), |rfft| over 512 points, HTK-mel filterbank of 64 bands from 125 to 7500 Hz with the DC bin
zeroed, log(mel + 0.01), then non-overlapping 96-frame (0.96 s) examples → [n, 1, 96, 64].

Network: torchvggish's `vggish-10086976.pth` key names (features.{0,3,6,8,11,13}, embeddings.{0,2,4}); the
conv output is flattened in TF's NHWC order; the output is the 128-d pre-activation embedding (TF's
`vggish/embedding`: no final ReLU, no PCA/quantisation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
STFT_WINDOW_S = 0.025
STFT_HOP_S = 0.010
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s at 100 frames/s


def hertz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix(num_bands: int = NUM_BANDS, num_bins: int = 257, sr: int = SAMPLE_RATE,
               lo: float = MEL_MIN_HZ, hi: float = MEL_MAX_HZ) -> np.ndarray:
    """[num_bins, num_bands] triangular HTK-mel weights, as TF `spectrogram_to_mel_matrix`."""
    bins_mel = hertz_to_mel(np.linspace(0.0, sr / 2.0, num_bins))
    edges = np.linspace(hertz_to_mel(lo), hertz_to_mel(hi), num_bands + 2)
    w = np.empty((num_bins, num_bands))
    for i in range(num_bands):
        left, centre, right = edges[i : i + 3]
        w[:, i] = np.maximum(0.0, np.minimum((bins_mel - left) / (centre - left), (right - bins_mel) / (right - centre)))
    w[0, :] = 0.0  # TF drops the DC bin
    return w


def log_mel(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """[frames, 64] log-mel of a 16 kHz mono waveform (float in [-1, 1])."""
    win = int(round(sr * STFT_WINDOW_S))
    hop = int(round(sr * STFT_HOP_S))
    n_fft = 2 ** int(np.ceil(np.log2(win)))
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < win:
        return np.zeros((0, NUM_BANDS))
    n_frames = 1 + (len(wave) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    spec = np.abs(np.fft.rfft(wave[idx] * window, n_fft))
    return np.log(spec @ mel_matrix(num_bins=n_fft // 2 + 1, sr=sr) + LOG_OFFSET)


def _examples_from_16k(wave: np.ndarray) -> np.ndarray:
    mel = log_mel(wave)
    n = len(mel) // EXAMPLE_FRAMES
    return mel[: n * EXAMPLE_FRAMES].reshape(n, 1, EXAMPLE_FRAMES, NUM_BANDS).astype(np.float32)


def waveform_to_examples(wave: np.ndarray, sr: int, window_s: float | None = None, hop_s: float | None = None,
                         peak_normalise: bool = False) -> np.ndarray:
    """Any rate/channels → [n, 1, 96, 64] float32 examples (mono by channel mean, soxr HQ to 16 kHz).

    Default: the whole waveform cut into non-overlapping 0.96 s examples. With `window_s`/`hop_s` (the
    `google` profile: 1 s windows every 0.5 s) each window is framed on its own, one example per 1 s.
    """
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim == 2:  # [samples, channels]
        wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, sr, SAMPLE_RATE, quality="HQ")
    if peak_normalise:
        # google-research `AudioSetModel.extract_features`: np.amax of the signed samples, not of |x|.
        wave = wave / max(0.1, float(wave.max(initial=0.0)))
    if window_s is None:
        return _examples_from_16k(wave)
    win, hop = int(round(window_s * SAMPLE_RATE)), int(round((hop_s or window_s) * SAMPLE_RATE))
    parts = [_examples_from_16k(wave[i : i + win]) for i in range(0, len(wave) - win + 1, hop)]
    return np.concatenate(parts) if parts else np.zeros((0, 1, EXAMPLE_FRAMES, NUM_BANDS), np.float32)


class VGGish(nn.Module):
    """[n, 1, 96, 64] log-mel examples → [n, 128] pre-activation embeddings."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for spec in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, spec, 3, padding=1), nn.ReLU(inplace=True)]
                cin = spec
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [n, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF flattens NHWC
        return self.embeddings(x)


def random_vggish(seed: int = 0) -> VGGish:
    """Seeded random weights: for tests and for runs without the real file (the record says so)."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # skip the default init: every parameter is overwritten below
        model = VGGish()
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
    return model.eval()


def load_vggish(path: str) -> VGGish:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = VGGish()
    # The hub file carries only features.* and embeddings.*; PCA parameters live in a separate file.
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("pproc")}, strict=True)
    return model.eval().requires_grad_(False)
