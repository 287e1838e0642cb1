"""Check a downloaded file with PyAV before it enters the cache.

Downloaders report success on files that are useless: an HTML error page saved as .mp4, an empty
261-byte mp4 written by ffmpeg when the server ignored a Range request, a file whose audio stream was
never merged, a file cut short. So every source is opened, both streams are located, and frames are
decoded at the start and near the end of each stream (a truncated file fails there even when its
header still announces the full duration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from avbench.errors import CurateError


class MediaRejected(CurateError, ValueError):
    """The file is not usable as an audio-video source; the message says why (one line).

    `error_class` is "transient" for a file that looks cut short (a re-download may fix it) and
    "permanent" otherwise (not media, a stream missing, too short).
    """

    def __init__(self, message: str, error_class: str = "permanent"):
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True)
class ProbeResult:
    duration_s: float
    width: int
    height: int
    fps: float
    video_codec: str
    sample_rate: int
    channels: int
    audio_codec: str
    container: str

    def to_dict(self) -> dict:
        return asdict(self)


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _decode_one(container, stream, seek_s: float | None) -> bool:
    """True if at least one frame of `stream` decodes (after seeking to `seek_s` when given)."""
    if seek_s is not None and seek_s > 0:
        container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
    for packet in container.demux(stream):
        for _ in packet.decode():
            return True
    return False


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def probe_media(path: str | Path, min_duration_s: float = 0.0) -> ProbeResult:
    """Open `path`, require a video and an audio stream that decode at both ends, and a duration of at
    least `min_duration_s`; raise MediaRejected with a one-line reason otherwise."""
    import av

    path = Path(path)
    size = path.stat().st_size if path.exists() else -1
    if size <= 0:
        raise MediaRejected(f"{path.name}: empty file ({max(size, 0)} bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaRejected(f"{path.name}: not a media file ({size} bytes; {_why(e)})") from None
    with container:
        videos = [s for s in container.streams.video]
        audios = [s for s in container.streams.audio]
        if not videos and not audios:
            raise MediaRejected(f"{path.name}: no audio or video stream ({size} bytes)")
        if not videos:
            raise MediaRejected(f"{path.name}: no video stream")
        if not audios:
            raise MediaRejected(f"{path.name}: no audio stream")
        v, a = videos[0], audios[0]
        vdur, adur = _stream_duration(container, v), _stream_duration(container, a)
        durations = [d for d in (vdur, adur) if d is not None]
        if not durations:
            raise MediaRejected(f"{path.name}: duration unknown (no stream or container duration)")
        duration = min(durations)
        if duration < min_duration_s:
            raise MediaRejected(f"{path.name}: too short ({duration:.2f} s < minimum {min_duration_s:.2f} s)")
        try:
            for stream in (v, a):
                if not _decode_one(container, stream, None):
                    raise MediaRejected(f"{path.name}: {stream.type} stream has no decodable frame")
                d = _stream_duration(container, stream)
                # A frame from the last second proves the file was not cut short after its header.
                if d is not None and d > 2.0 and not _decode_one(container, stream, d - 1.0):
                    raise MediaRejected(
                        f"{path.name}: {stream.type} stream ends early (truncated file?)", "transient"
                    )
        except av.error.FFmpegError as e:
            raise MediaRejected(f"{path.name}: not decodable ({_why(e)})", "transient") from None
        rate = v.average_rate or v.guessed_rate
        return ProbeResult(
            duration_s=round(duration, 3),
            width=int(v.codec_context.width),
            height=int(v.codec_context.height),
            fps=round(float(rate), 3) if rate else 0.0,
            video_codec=v.codec_context.name,
            sample_rate=int(a.codec_context.sample_rate or 0),
            channels=int(a.codec_context.channels or 0),
            audio_codec=a.codec_context.name,
            container=container.format.name,
        )
