"""Log-mel front end of MMAudio's audio VAE (the 16 kHz and 44.1 kHz modes).

The VAE was trained on these exact spectrograms, so every detail below is part of the model: the
waveform is clamped to [-1, 1], reflect-padded by (n_fft - hop) / 2 on both sides and transformed
without centring (so a clip of N samples gives N // hop frames), magnitudes carry a 1e-9 floor inside
the square root, the filter bank is librosa's (Slaney scale, Slaney area normalisation), and the log is
base 10 in the 16 kHz mode but natural in the 44.1 kHz mode, after clamping to 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import ModelConfigError

__all__ = ["MEL_CONFIGS", "MelConfig", "MelConverter", "mel_filter_bank"]


@dataclass(frozen=True)
class MelConfig:
    """One mel front end. `log` is "log10" or "ln" (the two modes differ there)."""

    sample_rate: int
    n_fft: int
    n_mels: int
    hop: int
    win: int
    fmin: float
    fmax: float
    log: str
    floor: float = 1e-5

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (62.5 at 16 kHz, ~86.13 at 44.1 kHz)."""
        return self.sample_rate / self.hop


MEL_CONFIGS: dict[str, MelConfig] = {
    "16k": MelConfig(sample_rate=16_000, n_fft=1024, n_mels=80, hop=256, win=1024, fmin=0.0,
                     fmax=8_000.0, log="log10"),
    "44k": MelConfig(sample_rate=44_100, n_fft=2048, n_mels=128, hop=512, win=2048, fmin=0.0,
                     fmax=44_100 / 2, log="ln"),
}

_LOGS = {"log10": torch.log10, "ln": torch.log}


def mel_filter_bank(cfg: MelConfig) -> torch.Tensor:
    """librosa's mel filter bank [n_mels, n_fft // 2 + 1] in float32."""
    # librosa pulls in numba; only a mel front end needs it, so it is imported here, not at the top.
    from librosa.filters import mel as librosa_mel

    bank = librosa_mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                       fmax=cfg.fmax)
    return torch.from_numpy(bank).float()


class MelConverter(nn.Module):
    """wave [B, N] (values in [-1, 1] at `cfg.sample_rate`) → log-mel [B, n_mels, N // hop]."""

    def __init__(self, cfg: MelConfig | str):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in MEL_CONFIGS:
                raise ModelConfigError(f"unknown mel config {cfg!r}; known: {', '.join(MEL_CONFIGS)}")
            cfg = MEL_CONFIGS[cfg]
        if cfg.log not in _LOGS:
            raise ModelConfigError(f"mel config log must be one of {sorted(_LOGS)}, not {cfg.log!r}")
        if (cfg.n_fft - cfg.hop) % 2:
            raise ModelConfigError(f"mel config needs an even n_fft - hop, got {cfg.n_fft} - {cfg.hop}")
        self.cfg = cfg
        # Not persistent: no released file carries them, and they follow from the config.
        self.register_buffer("mel_basis", mel_filter_bank(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.cfg.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if wave.ndim != 2:
            raise ValueError(f"MelConverter wants a wave [B, N], got shape {tuple(wave.shape)}")
        side = (cfg.n_fft - cfg.hop) // 2
        x = wave.to(self.mel_basis.device, torch.float32).clamp(-1.0, 1.0)
        x = F.pad(x[:, None], (side, side), mode="reflect")[:, 0]
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop, win_length=cfg.win, window=self.window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        mag = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)
        mel = self.mel_basis @ mag
        return _LOGS[cfg.log](mel.clamp_min(cfg.floor))

