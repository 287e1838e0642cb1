"""Token counts of the MMAudio network for a clip duration, and the frame rates they assume.

The network's rotary tables and the sync-feature upsampling depend on these counts, so a sampler for
a duration other than the trained 8 s computes them here and calls `MMAudio.update_seq_lengths`.
The arithmetic (float products, floor division, truncation) follows the original sequence config so
that odd durations give the same counts as the released demo.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from avbench.errors import ModelConfigError

__all__ = [
    "CLIP_FPS",
    "LATENT_HOP",
    "SYNC_FPS",
    "SequenceLengths",
    "audio_samples",
    "sequence_lengths",
]

# Audio samples per spectrogram frame, per sample rate; each latent covers 2 spectrogram frames.
LATENT_HOP = {16000: 256, 44100: 512}
_LATENT_DOWNSAMPLE = 2

CLIP_FPS = 8  # CLIP frames per second of video
SYNC_FPS = 25  # Synchformer frames per second of video
# Synchformer sees windows of 16 frames every 8 frames and gives 8 feature tokens per window.
_SYNC_WINDOW, _SYNC_STRIDE, _SYNC_TOKENS_PER_WINDOW = 16, 8, 8


class SequenceLengths(NamedTuple):
    latent: int
    clip: int
    sync: int


def _hop(sample_rate: int) -> int:
    if sample_rate not in LATENT_HOP:
        raise ModelConfigError(f"MMAudio has latents for {sorted(LATENT_HOP)} Hz only, not {sample_rate} Hz; "
                               "pick a variant's rate (16000 for small_16k, 44100 for the others)")
    return LATENT_HOP[sample_rate]


def sequence_lengths(duration_s: float, sample_rate: int) -> SequenceLengths:
    """(latent, clip, sync) token counts for `duration_s` of audio at `sample_rate`; 8 s at 16 kHz is
    (250, 64, 192), at 44.1 kHz (345, 64, 192)."""
    hop = _hop(sample_rate)
    sync_frames = duration_s * SYNC_FPS
    if sync_frames < _SYNC_WINDOW:
        raise ModelConfigError(f"MMAudio needs at least {_SYNC_WINDOW / SYNC_FPS:g} s of video (one "
                               f"Synchformer window), got {duration_s:g} s; use a longer duration")
    latent = math.ceil(duration_s * sample_rate / hop / _LATENT_DOWNSAMPLE)
    clip = int(duration_s * CLIP_FPS)
    windows = (sync_frames - _SYNC_WINDOW) // _SYNC_STRIDE + 1
    sync = int(windows * _SYNC_TOKENS_PER_WINDOW)
    return SequenceLengths(latent, clip, sync)


def audio_samples(duration_s: float, sample_rate: int) -> int:
    """Samples the VAE decodes from `sequence_lengths(...).latent` latents (≥ duration · rate)."""
    return sequence_lengths(duration_s, sample_rate).latent * _hop(sample_rate) * _LATENT_DOWNSAMPLE
