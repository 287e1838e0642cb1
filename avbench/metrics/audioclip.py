"""AudioCLIP's audio head (ESResNeXt-50 32×4d with the learnable fbsp front end), for AudioCLIP-FAD.

Written from the description in Guzhov et al., "AudioCLIP" / "ESResNe(X)t-fbsp", and by reading the MIT
original (github AndreyGuzhov/AudioCLIP, model/esresnet/{base,fbsp,attention}.py, utils/transforms.py);
no code is copied. State-dict keys and shapes are the original's, so the `audio.` part of
`AudioCLIP-Full-Training.pt` loads as is. Parity with the original on seeded weights of the real shapes:
tests/test_metrics_audioclip.py against tests/fixtures/audioclip/.

The head's input is int16-scale audio (AudioCLIP's datasets feed `wav * 32768`); its first step maps
[-32768, 32767] to [-1, 1] in float32. Then, per clip (44.1 kHz as trained):
- frames of 1654 samples every 561 (zero padding split half/half so the last frame fits), times a
  periodic Blackman-Harris window, each zero-padded to 2048 (197 each side);
- the fbsp transform: a learnt complex linear map 2048 → 1025 bins (parameters m, fb, fc per bin);
- power |·|², the first 1023 bins cut into three 341-bin bands stacked as the ResNet's 3 input channels,
  10·log10 with exact zeros replaced by 1e-18;
- ResNeXt-50 with attention gates after each stage and after the pooling, then a linear layer to 1024.
The "raw" embedding MM-Diffusion uses is that linear layer's output (before AudioCLIP's L2 normalisation).

BatchNorm can run on batch statistics (`batch_statistics=True`) without touching the running buffers:
MM-Diffusion never calls `.eval()` on AudioCLIP, so its embeddings are normalised per evaluation batch.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import MetricsError, WeightsError

SAMPLE_RATE = 44_100
N_FFT = 2048
WIN_LENGTH = 1654
HOP_LENGTH = 561
N_BINS = N_FFT // 2 + 1  # 1025
BANDS = 3  # the ResNet's input channels
EMBED_DIM = 1024
CLIP_SAMPLES = 70_560  # MM-Diffusion's AUDIO_SIZE: 1.6 s at 44.1 kHz
LOG_FLOOR = 1e-18
_FBSP_EPS = 1e-8
_BN_EPS = 1e-5

# Absent from a file does not matter for these: the window is a fixed function of its length, the
# original registers an empty tensor as the fbsp bias it does not use (so a saved dict carries the key), and
# BatchNorm's step counter is read only with momentum=None, which neither the original nor this port uses.
OPTIONAL_KEYS = ("window", "fbsp.bias")
OPTIONAL_SUFFIX = ".num_batches_tracked"


class BatchStatisticsError(MetricsError):
    """Batch-statistics BatchNorm (the `mmdiffusion` profile) given a batch it cannot normalise."""


def blackman_harris(n: int) -> torch.Tensor:
    """Periodic 4-term Blackman-Harris window (scipy's `get_window('blackmanharris', n)`)."""
    k = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    w = 0.35875 - 0.48829 * torch.cos(k) + 0.14128 * torch.cos(2 * k) - 0.01168 * torch.cos(3 * k)
    return w.to(torch.float32)


def prepare_waveform(wave: np.ndarray, sr: int, length: int = CLIP_SAMPLES) -> np.ndarray:
    """One clip as MM-Diffusion feeds it: first channel, 44.1 kHz (soxr HQ), zeros after the end or cut."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim == 2:  # [samples, channels]
        wave = wave[:, 0]
    if sr != SAMPLE_RATE:
        wave = soxr.resample(wave, sr, SAMPLE_RATE, quality="HQ")
    out = np.zeros(length, np.float32)
    out[: min(length, len(wave))] = wave[:length]
    return out


def int16_range_to_unit(x: torch.Tensor) -> torch.Tensor:
    """The head's own input map [-32768, 32767] → [-1, 1], as the original's arithmetic in float32.

    Fed [-1, 1] floats instead (MM-Diffusion), x + 32768 rounds to multiples of 2⁻⁸ or 2⁻⁹ and the result
    is (2x + 1)/65535: about 90 dB quieter, a DC offset of 1/65535, and only ~9 bits of the signal kept.
    """
    x = x.to(torch.float32)
    return ((x + 32768.0) * 2.0) / 65535.0 - 1.0


def frame_signal(x: torch.Tensor, frame_length: int = WIN_LENGTH, hop: int = HOP_LENGTH,
                 window: torch.Tensor | None = None) -> torch.Tensor:
    """[..., L] → [..., frames, frame_length]: windows every `hop`, zero padding split so the last fits."""
    length = x.shape[-1]
    n_frames = 1 if length <= frame_length else 1 + -(-(length - frame_length) // hop)
    pad = max((n_frames - 1) * hop + frame_length - length, 0)
    frames = F.pad(x, (pad // 2, pad - pad // 2)).unfold(-1, frame_length, hop)
    return frames if window is None else frames * window


class FBSP(nn.Module):
    """Learnable "frequency B-spline" transform: per output bin a windowed complex sinusoid over the frame.

    Bin k's kernel over t ∈ π·linspace(−1, 1, n): √fb · sinc(fb·t/m)^m · e^{−i·fc·t}; the real sinc raised
    to the real power m is |sinc|^m with phase m·π where the sinc is negative. Normalised by √n.
    """

    def __init__(self, n_bins: int = N_BINS, normalized: bool = True):
        super().__init__()
        self.normalized = normalized
        self.m = nn.Parameter(torch.zeros(n_bins))
        self.fb = nn.Parameter(torch.ones(n_bins))
        self.fc = nn.Parameter(torch.arange(n_bins, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(0))  # see OPTIONAL_KEYS

    def kernels(self, n_in: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary weights, each [n_bins, n_in].

        Evaluated in the original's order of operations (|w| as √(w²), |w|^m as (|w|²)^(m/2), gain applied
        before the normalisation): bins with little energy amplify rounding differences into the log power.
        """
        t = (math.pi * torch.linspace(-1.0, 1.0, n_in, dtype=dtype, device=device) + _FBSP_EPS)[None, :]
        m, fb, fc = self.m[:, None], self.fb[:, None], self.fc[:, None]
        arg = fb * t / (m + _FBSP_EPS)
        sinc = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / arg)
        modulus = (sinc ** 2) ** 0.5
        magnitude = (modulus ** 2) ** (0.5 * m)
        phase = m * torch.atan2(torch.zeros_like(sinc), sinc)
        win_re, win_im = magnitude * torch.cos(phase), magnitude * torch.sin(phase)
        cos, sin = torch.cos(fc * t), -torch.sin(fc * t)
        gain = fb.sqrt()
        re, im = gain * (win_re * cos - win_im * sin), gain * (win_re * sin + win_im * cos)
        if self.normalized:
            re, im = re / n_in ** 0.5, im / n_in ** 0.5
        return re, im

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        re, im = self.kernels(frames.shape[-1], frames.dtype, frames.device)
        return F.linear(frames, re), F.linear(frames, im)


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that can normalise with the batch's own statistics while leaving its buffers alone."""

    batch_statistics = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch_statistics:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


class Bottleneck(nn.Module):
    """ResNeXt bottleneck: 1×1 → grouped 3×3 (stride here) → 1×1 ×4, projected shortcut where shapes change."""

    def __init__(self, cin: int, planes: int, stride: int, groups: int = 32, width_per_group: int = 4):
        super().__init__()
        width = planes * width_per_group // 64 * groups
        cout = planes * 4
        self.conv1, self.bn1 = _conv(cin, width, 1), BatchNorm(width, _BN_EPS)
        self.conv2, self.bn2 = _conv(width, width, 3, stride, groups), BatchNorm(width, _BN_EPS)
        self.conv3, self.bn3 = _conv(width, cout, 1), BatchNorm(cout, _BN_EPS)
        self.downsample = (nn.Sequential(_conv(cin, cout, 1, stride), BatchNorm(cout, _BN_EPS))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class AttentionGate(nn.Module):
    """Sigmoid gate from a stage's input: max-pooled to the output size, depthwise then pointwise conv, BN."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int]):
        super().__init__()
        self.conv_depth = nn.Conv2d(cin, cin, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=cin)
        self.conv_point = nn.Conv2d(cin, cout, 1)
        self.bn = BatchNorm(cout, _BN_EPS)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(F.adaptive_max_pool2d(x, size)))))


class AudioHead(nn.Module):
    """int16-scale waveform [B, L] or [B, 1, L] at 44.1 kHz → [B, 1024] (AudioCLIP's `audio` module)."""

    STAGES = ((64, 3, 1, (3, 1)), (128, 4, 2, (1, 5)), (256, 6, 2, (3, 1)), (512, 3, 2, (1, 5)))

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.fbsp = FBSP()
        self.register_buffer("window", blackman_harris(WIN_LENGTH))
        self.conv1 = nn.Conv2d(BANDS, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm(64, _BN_EPS)
        cin = 64
        for i, (planes, blocks, stride, kernel) in enumerate(self.STAGES, start=1):
            layer = [Bottleneck(cin, planes, stride)] + [Bottleneck(planes * 4, planes, 1) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            # the gate reads the stage's input (cin channels) and scales its output (4·planes channels)
            self.add_module(f"att{i}", AttentionGate(cin, planes * 4, kernel))
            cin = planes * 4
        self.att5 = AttentionGate(cin, cin, (3, 5))
        self.fc = nn.Linear(cin, embed_dim)

    def set_batch_statistics(self, enabled: bool) -> None:
        for module in self.modules():
            if isinstance(module, BatchNorm):
                module.batch_statistics = enabled

    @property
    def batch_statistics(self) -> bool:
        return self.bn1.batch_statistics

    def log_power_bands(self, x: torch.Tensor) -> torch.Tensor:
        """int16-scale [B, L] → dB [B, 3, 341, frames]: what the ResNet sees."""
        x = int16_range_to_unit(x.reshape(x.shape[0], -1))
        frames = frame_signal(x, WIN_LENGTH, HOP_LENGTH, self.window)
        left = (N_FFT - WIN_LENGTH) // 2
        frames = F.pad(frames, (left, N_FFT - WIN_LENGTH - left))
        re, im = self.fbsp(frames)  # [B, frames, bins]
        power = (re ** 2 + im ** 2).transpose(1, 2)
        per_band = N_BINS // BANDS
        power = power[:, : BANDS * per_band].reshape(x.shape[0], BANDS, per_band, -1)
        power = torch.where(power > 0.0, power, torch.full_like(power, LOG_FLOOR))
        return 10.0 * torch.log10(power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_statistics and x.shape[0] < 2:
            raise BatchStatisticsError(
                f"a batch of {x.shape[0]} clip cannot be embedded with batch-statistics BatchNorm (the mmdiffusion "
                "AudioCLIP profile: its after-pooling gate normalises one value per clip, so MM-Diffusion's evaluator "
                "fails here too); use a clip count that does not leave a last batch of 1, or the `audioclip` profile"
            )
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(self.log_power_bands(x)))), 3, 2, 1)
        for i in range(1, 5):
            out = getattr(self, f"layer{i}")(h)
            h = out * getattr(self, f"att{i}")(h, out.shape[-2:])
        pooled = F.adaptive_avg_pool2d(h, 1)
        pooled = pooled * self.att5(h, pooled.shape[-2:])
        return self.fc(pooled.flatten(1))


def audio_state(state: dict) -> dict[str, torch.Tensor]:
    """The audio head's entries of a full AudioCLIP state dict (`audio.` prefix) or an audio-only dict."""
    if any(k.startswith("audio.") for k in state):
        return {k[len("audio."):]: v for k, v in state.items() if k.startswith("audio.")}
    return dict(state)


def load_audio_head(state: dict, source: str = "state dict") -> AudioHead:
    """Build the head from a state dict; keys and shapes must be the original's (see OPTIONAL_KEYS)."""
    model = AudioHead()
    expected = model.state_dict()
    state = audio_state(state)
    missing = sorted(k for k in expected
                     if k not in state and k not in OPTIONAL_KEYS and not k.endswith(OPTIONAL_SUFFIX))
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise WeightsError(f"{source}: not an AudioCLIP audio head ({'; '.join(parts)}); "
                           "expected AudioCLIP-Full-Training.pt from the AudioCLIP v0.1 release")
    model.load_state_dict({**expected, **{k: v.to(expected[k].dtype) for k, v in state.items()}})
    return model.eval()


def load_audio_head_file(path: str | os.PathLike[str]) -> AudioHead:
    """Load from `AudioCLIP-Full-Training.pt` (tensors only: no code from the file runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise WeightsError(f"{path}: not a readable torch state dict ({' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return load_audio_head(state, str(Path(path)))
