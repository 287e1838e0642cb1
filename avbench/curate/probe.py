"""Check a downloaded file with PyAV before it enters the cache.

Downloaders report success on files that are useless: an HTML error page saved as .mp4, an empty
261-byte mp4 written by ffmpeg when the server ignored a Range request, a file whose audio stream was
never merged, a file cut short. So every source is opened, both streams are located, and each stream
must decode a frame at its start and after its last keyframe (a truncated file fails there even when
its header still announces the full duration).

Durations are measured, not taken from the header alone: the span of a stream runs from its start time
to the end of its last packet. Matroska files written from sources whose timestamps start late (a
recording that begins at 10 h) carry the *end* time as their duration, and mp4 stream durations exclude
the start offset; measuring gives the real length for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av

from avbench.errors import SourceFailure


class MediaRejected(SourceFailure, ValueError):
    """The file is not usable as an audio-video source; the message says why (one line).

    The class is "transient" for a file that looks cut short (a re-download may fix it) and
    "permanent" otherwise (not media, a stream missing, too short).
    """

    def __init__(self, message: str, error_class: str = "permanent"):
        super().__init__(error_class, message)

    @property
    def error_class(self) -> str:
        return self.cls


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


# A stream measured this much shorter than its header says was cut after the header was written.
_TRUNCATION_SLACK_S = 1.0


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _start_s(container, stream) -> float:
    if stream.start_time is not None:
        return float(stream.start_time * stream.time_base)
    return container.start_time / 1_000_000 if container.start_time is not None else 0.0


def _declared_s(container, stream) -> float | None:
    """What the header says: the stream's own duration, else the container's (which may be an end time)."""
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _seek(container, stream, at_s: float) -> None:
    container.seek(max(0, int(at_s / stream.time_base)), stream=stream, backward=True)


def _first_frame(container, stream, start_s: float) -> bool:
    """True if `stream` decodes a frame at its start. Seeks there first: the demuxer position is shared,
    so after checking another stream's end it sits wherever that check left it."""
    _seek(container, stream, start_s)
    for packet in container.demux(stream):
        for _ in packet.decode():
            return True
    return False


def _end_s(container, stream, start_s: float, declared_s: float | None) -> float | None:
    """End of the last packet of `stream`, demuxed from its last keyframe; None when nothing there decodes."""
    # Past any plausible end: a backward seek then lands on the last keyframe the index knows.
    _seek(container, stream, start_s + 2 * (declared_s or 0.0) + 60.0)
    end, decoded = None, False
    for packet in container.demux(stream):
        if not decoded:  # the decoder may hold frames back until the flush packet at EOF
            decoded = any(True for _ in packet.decode())
        if packet.pts is not None:
            stop = (packet.pts + (packet.duration or 0)) * stream.time_base
            end = float(stop) if end is None else max(end, float(stop))
    return end if decoded else None


def probe_media(path: str | Path, min_duration_s: float = 0.0, *, label: str | None = None) -> ProbeResult:
    """Open `path`, require a video and an audio stream that decode at both ends, and a duration of at
    least `min_duration_s`; raise MediaRejected with a one-line reason otherwise. Messages start with
    `label` (default: the file name), so a caller probing a work copy can name the user's file."""
    path = Path(path)
    name = label or path.name
    size = path.stat().st_size if path.exists() else -1
    if size <= 0:
        raise MediaRejected(f"{name}: empty file ({max(size, 0)} bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaRejected(f"{name}: not a media file ({size} bytes; {_why(e)})") from None
    with container:
        videos = [s for s in container.streams.video]
        audios = [s for s in container.streams.audio]
        if not videos and not audios:
            raise MediaRejected(f"{name}: no audio or video stream ({size} bytes)")
        if not videos:
            raise MediaRejected(f"{name}: no video stream")
        if not audios:
            raise MediaRejected(f"{name}: no audio stream")
        v, a = videos[0], audios[0]
        spans = []
        for stream in (v, a):
            start, declared = _start_s(container, stream), _declared_s(container, stream)
            try:
                if not _first_frame(container, stream, start):
                    raise MediaRejected(f"{name}: {stream.type} stream has no decodable frame")
            except av.error.FFmpegError as e:
                raise MediaRejected(f"{name}: not decodable ({_why(e)})", "transient") from None
            try:
                end = _end_s(container, stream, start, declared)
            except av.error.FFmpegError:
                end = None  # a read error past the last good byte: the file was cut
            span = None if end is None else end - start
            cut = span is None or (stream.duration is not None and span < declared - _TRUNCATION_SLACK_S)
            if cut and declared is not None and declared > 2.0:
                raise MediaRejected(f"{name}: {stream.type} stream ends early (truncated file?)", "transient")
            spans.append(span if span is not None else declared)
        durations = [d for d in spans if d is not None]
        if not durations:
            raise MediaRejected(f"{name}: duration unknown (no stream or container duration)")
        duration = min(durations)
        if duration < min_duration_s:
            raise MediaRejected(f"{name}: too short ({duration:.2f} s < minimum {min_duration_s:.2f} s)")
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
