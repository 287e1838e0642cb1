"""AV-Align: a weight-free audio-video synchrony score (after TempoTokens' `av_align.py`).

Choices (all fixed, recorded in the protocol):
- audio peaks: `librosa.onset.onset_detect` with librosa's defaults (hop 512) on the clip's audio at its
  own rate (16 kHz for avbench data) — TempoTokens loads at 22.05 kHz; we do not resample;
- video peaks: dense Farneback optical flow (OpenCV; pyr_scale 0.5, 3 levels, window 15, 3 iterations,
  poly_n 5, poly_sigma 1.2) between consecutive grey frames; the mean flow magnitude of pair (k, k+1) is
  placed at time (k+1)/fps; peaks are strict interior local maxima of that series;
- an audio peak a is a hit when a video peak v has v − 1/fps < a < v + 1/fps (TempoTokens' open window);
  audio and video peaks are matched one to one (nearest first), so IoU stays ≤ 1 (TempoTokens' count
  can exceed 1);
- IoU = hits / (|audio peaks| + |video peaks| − hits); a clip with no peaks on either side has no score
  and is left out of the mean (the count of scored clips is recorded).
"""

from __future__ import annotations

import numpy as np

PROTOCOL = {
    "audio_peaks": "librosa.onset.onset_detect(defaults, native rate)",
    "video_peaks": "farneback(0.5,3,15,3,5,1.2) mean magnitude, interior local maxima, time=(k+1)/fps",
    "tolerance": "open window v-1/fps < a < v+1/fps, one-to-one matching",
    "score": "hits/(|A|+|V|-hits), mean over clips with any peak",
}


def audio_peak_times(audio: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(audio, dtype=np.float32), sr=sr, units="time")


def flow_magnitudes(frames: np.ndarray) -> np.ndarray:
    """[T-1] mean optical-flow magnitude between consecutive frames of uint8 [T, H, W, 3]."""
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    mags = []
    for a, b in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return np.asarray(mags)


def local_maxima(x: np.ndarray) -> np.ndarray:
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    i = np.arange(1, len(x) - 1)
    return i[(x[i] > x[i - 1]) & (x[i] > x[i + 1])]


def video_peak_times(frames: np.ndarray, fps: float) -> np.ndarray:
    return (local_maxima(flow_magnitudes(frames)) + 1) / fps


def iou_score(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float) -> float | None:
    a, v = np.asarray(audio_peaks), np.asarray(video_peaks)
    if len(a) + len(v) == 0:
        return None
    # One-to-one matching (each video peak absorbs at most one audio peak, nearest first) keeps IoU ≤ 1;
    # TempoTokens counts every audio peak near any video peak, which can exceed 1 on double onsets.
    free = sorted(v.tolist())
    hits = 0
    for t in sorted(a.tolist()):
        # TempoTokens' open window written as it does, so boundary cases round the same way.
        near = [u for u in free if u - 1.0 / fps < t < u + 1.0 / fps]
        if near:
            free.remove(min(near, key=lambda u: abs(u - t)))
            hits += 1
    return hits / (len(a) + len(v) - hits)


def av_align(frames: np.ndarray, audio: np.ndarray, sr: int, fps: float) -> float | None:
    return iou_score(audio_peak_times(audio, sr), video_peak_times(frames, fps), fps)
