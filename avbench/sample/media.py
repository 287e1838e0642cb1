"""Writing generated samples and reading conditioning media.

Samples are written as a 16 kHz 16-bit WAV (the exact audio, for FAD) and an MP4 with H.264 video and
AAC audio muxed (for watching and for FVD). libx264 runs with one thread so the bytes are reproducible.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avbench.io import atomic_path

AUDIO_CHUNK = 1024  # AAC frame size


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[F, 3, H, W] in [-1, 1] → [F, H, W, 3] uint8."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_pcm(audio: torch.Tensor) -> np.ndarray:
    """[1, L] or [L] in [-1, 1] → float32 [L] clipped to [-1, 1]."""
    return audio.float().reshape(-1).clamp(-1, 1).cpu().numpy()


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None, fps: int, sample_rate: int) -> None:
    """H.264 (yuv420p, crf 18, one thread) + optional mono AAC, frames [F, H, W, 3] uint8."""
    import av

    n, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), "w", format="mp4")
        try:
            vs = container.add_stream("libx264", rate=fps, options={"preset": "medium", "crf": "18", "threads": "1"})
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.codec_context.thread_count = 1
            vs.time_base = Fraction(1, fps)
            a_s = None
            if audio is not None:
                a_s = container.add_stream("aac", rate=sample_rate, layout="mono")
                a_s.codec_context.thread_count = 1
                a_s.time_base = Fraction(1, sample_rate)
                a_s.bit_rate = 128000
            a_next = 0

            def push_audio(until: int) -> None:
                nonlocal a_next
                while a_s is not None and a_next < min(until, len(audio)):
                    end = min(a_next + AUDIO_CHUNK, len(audio))
                    frame = av.AudioFrame.from_ndarray(audio[None, a_next:end].astype(np.float32), format="fltp", layout="mono")
                    frame.sample_rate, frame.pts, frame.time_base = sample_rate, a_next, Fraction(1, sample_rate)
                    container.mux(a_s.encode(frame))
                    a_next = end

            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                container.mux(vs.encode(frame))
                push_audio((i + 1) * sample_rate // fps)
            container.mux(vs.encode(None))
            if a_s is not None:
                push_audio(len(audio))
                container.mux(a_s.encode(None))
        finally:
            container.close()


def media_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory of conditioning files; check the path")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{directory}: no {'/'.join(suffixes)} files to condition on; point it at a folder of them")
    return files


def read_audio_condition(path: Path, length: int, sample_rate: int) -> torch.Tensor:
    """The first `length` samples of a file as [1, length] float32: downmixed to mono, resampled to
    `sample_rate` if needed."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError subclasses
        raise ValueError(f"{path}: unreadable audio ({e}); use WAV or FLAC files") from None
    mono = data.mean(axis=1)
    if sr != sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    if len(mono) < length:
        raise ValueError(f"{path}: {len(mono)} samples at {sample_rate} Hz, the model needs {length}; "
                         "use clips at least as long as the model's window")
    return torch.from_numpy(np.ascontiguousarray(mono[:length])).reshape(1, length)


def read_video_condition(path: Path, frames: int, height: int, width: int) -> tuple[torch.Tensor, bool, float | None]:
    """The first `frames` frames as [F, 3, H, W] in [-1, 1] (area-resized if the size differs), whether a
    resize happened, and the file's frame rate (it should be the model's: 10 fps clips)."""
    import av

    out = []
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
            fps = float(rate) if rate else None
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == frames:
                    break
    except av.FFmpegError as e:
        raise ValueError(f"{path}: unreadable video ({e}); use MP4 clips at the model's frame rate") from None
    if len(out) < frames:
        raise ValueError(f"{path}: {len(out)} frames, the model needs {frames}; use clips at least that long")
    video = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1
    resized = video.shape[-2:] != (height, width)
    if resized:
        video = F.interpolate(video, size=(height, width), mode="area")
    return video.contiguous(), resized, fps
