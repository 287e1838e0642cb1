"""Reading conditioning media for `avbench sample` (audio for video generation, video for audio).

The writers of generated samples (16-bit WAV, H.264 + AAC mp4) are `avbench.media`'s, shared with
resample and training previews so their bytes are reproducible the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avbench.errors import MissingInputError, SampleError


def media_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"{directory}: no such directory of conditioning files; check the path")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))
    if not files:
        raise MissingInputError(f"{directory}: no {'/'.join(suffixes)} files to condition on; point it at a folder of them")
    return files


def read_audio_condition(path: Path, length: int, sample_rate: int) -> torch.Tensor:
    """The first `length` samples of a file as [1, length] float32: downmixed to mono, resampled to
    `sample_rate` if needed."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError subclasses
        raise SampleError(f"{path}: unreadable audio ({e}); use WAV or FLAC files") from None
    mono = data.mean(axis=1)
    if sr != sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    if len(mono) < length:
        raise SampleError(f"{path}: {len(mono)} samples at {sample_rate} Hz, the model needs {length}; "
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
        raise SampleError(f"{path}: unreadable video ({e}); use MP4 clips at the model's frame rate") from None
    if len(out) < frames:
        raise SampleError(f"{path}: {len(out)} frames, the model needs {frames}; use clips at least that long")
    video = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1
    resized = video.shape[-2:] != (height, width)
    if resized:
        video = F.interpolate(video, size=(height, width), mode="area")
    return video.contiguous(), resized, fps
