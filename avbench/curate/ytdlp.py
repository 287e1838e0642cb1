"""Everything avbench says to yt-dlp: the options (one builder, for searches and downloads), a logger that
keeps its messages off stderr, the URL check, and the classification of its errors.

yt-dlp takes ~0.2 s to import, longer than the rest of the CLI together, so it is imported inside the
functions that call it; the rest of avbench reaches yt-dlp only through this module.

Failure classes: *permanent* means a rerun cannot help (removed/private/unavailable, 404, not media,
a URL avbench refuses); *transient* means it may (403/429, timeouts, resets, truncated transfers).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from avbench.curate.throttle import RETRY_STATUSES, parse_retry_after
from avbench.errors import PERMANENT, TRANSIENT, ConfigError, SourceFailure

# The smallest rendition of at least 360p that has audio (merged from separate streams when needed);
# sources offering nothing that tall fall back to the smallest with audio. "+res" sorts ascending, so
# "best" under this sort means "lowest resolution, then smallest file".
DEFAULT_FORMAT = "bv*[height>=360]+ba/b[height>=360]/bv*+ba/b"
FORMAT_SORT = ("+res", "+size", "+br")

# Lower-cased message fragments, checked after the HTTP status and exception type.
_TRANSIENT_FIRST = ("not a bot", "confirm you", "rate-limit", "too many requests", "try again later")
_PERMANENT = (
    "video unavailable",
    "private video",
    "has been removed",
    "is not available",
    "account associated",
    "copyright",
    "unsupported url",
    "did not get any data blocks",
    "no video formats",
    "requested format is not available",
    "members-only",
    "members only",
    "premieres in",
    "this live event",
    "http error 404",
    "http error 410",
)
_TRANSIENT = ("http error 403", "http error 429", "http error 5", "timed out", "timeout", "connection",
              "bytes read", "giving up after", "temporarily", "incomplete read", "reset by peer")

# ASCII that RFC 3986 never allows in a URL: whitespace, controls, quotes, backticks, '|', '<', '\'.
# `avbench resolve` never writes them, so a lock file holding them was edited by hand or by someone
# hostile. Non-ASCII letters stay allowed: yt-dlp escapes IRIs like https://example.org/vidéo.mp4.
_NOT_IN_URLS = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')


def one_line(text: str) -> str:
    """yt-dlp's error text as one line: no "ERROR: " prefix, no repeated "(caused by ...)" tail."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    line = line.removeprefix("ERROR: ")
    cut = line.find(" (caused by ")
    return line[:cut] if cut > 0 else line


def check_url(url: str) -> None:
    """Refuse what a hand-edited or hostile lock file may hold instead of a web address (`file://`,
    shell syntax): SourceFailure, permanent, since fetching it again cannot make it a URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or _NOT_IN_URLS.search(url):
        raise SourceFailure(
            PERMANENT, f"{url!r}: refused, not an http(s) URL; fix it in the spec (or the lock file's 'url' column)"
        )


class QuietLogger:
    """Collects yt-dlp's messages instead of letting them reach stderr (quiet=True does not stop errors)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


@dataclass(frozen=True)
class FetchOptions:
    """The knobs of `avbench download` that reach yt-dlp (their defaults live in DownloadConfig)."""

    format: str
    retries: int  # HTTP / fragment / extractor retries within one attempt
    backoff_s: float  # sleep before retry n is backoff_s * 2**n (capped at 60 s)
    sleep_s: float  # pause before each download
    rate_limit: str | None  # bytes/s per download, e.g. "2M" (DownloadConfig turns a global cap into this)
    cookies: str | None
    socket_timeout_s: float


def base_options(cookies: str | None = None, logger: Any = None) -> dict[str, Any]:
    """What every yt-dlp call gets: silence, the logger, and the cookies file (ConfigError if missing)."""
    opts: dict[str, Any] = {"quiet": True, "no_warnings": True, "noprogress": True,
                            "logger": logger if logger is not None else QuietLogger()}
    if cookies:
        if not Path(cookies).is_file():
            raise ConfigError(f"--cookies {cookies}: file not found (export a Netscape cookies.txt)")
        opts["cookiefile"] = cookies
    return opts


def search_options(n: int, *, cookies: str | None = None, logger: Any = None) -> dict[str, Any]:
    """A flat search: result pages only, no video page fetched."""
    return {**base_options(cookies, logger), "extract_flat": "in_playlist", "playlistend": n}


def download_options(fo: FetchOptions, outdir: Path, stem: str, *, logger: Any = None) -> dict[str, Any]:
    """Options to fetch one source to `outdir/stem.<ext>`; ConfigError on a bad rate limit or cookies file."""
    from yt_dlp.utils import parse_bytes

    backoff = fo.backoff_s
    opts = {
        **base_options(fo.cookies, logger),
        "outtmpl": str(outdir / f"{stem}.%(ext)s"),
        "format": fo.format,
        "format_sort": list(FORMAT_SORT),
        "retries": fo.retries,
        "fragment_retries": fo.retries,
        "extractor_retries": fo.retries,
        "retry_sleep_functions": {k: (lambda n: min(60.0, backoff * 2**n)) for k in ("http", "fragment", "extractor")},
        # The default (True) skips fragments that fail and reports success on a truncated file.
        "skip_unavailable_fragments": False,
        "continuedl": True,  # resume `.part` files left by a killed run
        "noplaylist": True,
        "socket_timeout": fo.socket_timeout_s,
    }
    if fo.sleep_s > 0:
        opts["sleep_interval"] = fo.sleep_s
    if fo.rate_limit:
        rate = parse_bytes(fo.rate_limit)
        if rate is None:
            raise ConfigError(f"--rate-limit {fo.rate_limit!r}: expected bytes per second like 500K or 2M")
        opts["ratelimit"] = rate
    return opts


def _paced(before_request: Callable[[str], None]):
    """A YoutubeDL whose every request (page, API, media, fragment: all go through `urlopen`) first
    calls `before_request(host)`."""
    import yt_dlp

    class PacedYoutubeDL(yt_dlp.YoutubeDL):
        def urlopen(self, req):
            url = req if isinstance(req, str) else getattr(req, "url", None) or req.get_full_url()
            before_request(urllib.parse.urlsplit(url).netloc)
            return super().urlopen(req)

    return PacedYoutubeDL


def extract(url: str, opts: dict[str, Any], *, download: bool,
            before_request: Callable[[str], None] | None = None) -> dict:
    """yt-dlp's sanitised info dict for `url` (downloading the media when `download`); `before_request`
    is called with the host before each HTTP request (per-host pacing)."""
    import yt_dlp

    cls = yt_dlp.YoutubeDL if before_request is None else _paced(before_request)
    with cls(opts) as ydl:
        return ydl.sanitize_info(ydl.extract_info(url, download=download)) or {}


def fetch(url: str, fo: FetchOptions, outdir: Path, stem: str, *,
          before_request: Callable[[str], None] | None = None) -> tuple[Path, dict[str, str]]:
    """Download `url` into `outdir`; (the file, provenance for the record)."""
    import yt_dlp

    check_url(url)
    info = extract(url, download_options(fo, outdir, stem), download=True, before_request=before_request)
    downloads = info.get("requested_downloads") or []
    path = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if path is None or not path.exists():
        raise SourceFailure(TRANSIENT, f"{url}: yt-dlp reported success but wrote no file")
    meta = {
        "fetcher": f"yt-dlp {yt_dlp.version.__version__}",
        "extractor": info.get("extractor_key") or "",
        "format_id": info.get("format_id") or "",
        "format": info.get("format") or "",
        "license": info.get("license") or "",
        "title": info.get("title") or "",
        "channel": info.get("channel") or info.get("uploader") or "",
        "channel_id": info.get("channel_id") or "",
        "upload_date": info.get("upload_date") or "",
        "availability": info.get("availability") or "",
    }
    return path, meta


def retry_hint(exc: BaseException) -> tuple[bool, float | None]:
    """(may waiting and fetching again cure it, the server's Retry-After in seconds). Only HTTP 408, 425,
    429 and 5xx: yt-dlp already retries transport errors and 5xx inside a transfer (`retries`), but not
    429, not the extraction's first request, and it never reads Retry-After."""
    from yt_dlp.networking.exceptions import HTTPError
    from yt_dlp.utils import DownloadError

    cause = exc.exc_info[1] if isinstance(exc, DownloadError) and exc.exc_info else exc
    if isinstance(cause, HTTPError) and cause.status in RETRY_STATUSES:
        headers = getattr(cause.response, "headers", None) or {}
        return True, parse_retry_after(headers.get("Retry-After"))
    return False, None


def classify(exc: BaseException) -> tuple[str, str]:
    """(error class, one-line message) for an exception raised while fetching a source."""
    if isinstance(exc, SourceFailure):
        return exc.cls, str(exc)
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import ContentTooShortError, DownloadError, UnsupportedError

    cause = exc
    if isinstance(exc, DownloadError) and exc.exc_info and exc.exc_info[1] is not None:
        cause = exc.exc_info[1]
    msg = one_line(str(exc)) or type(exc).__name__
    if isinstance(cause, HTTPError):
        if cause.status in (400, 401, 404, 410, 451):
            return PERMANENT, msg
        return TRANSIENT, msg  # 403 (expired URL / IP block), 408, 429, 5xx
    if isinstance(cause, (TransportError, ContentTooShortError, TimeoutError, ConnectionError)):
        return TRANSIENT, msg
    if isinstance(cause, UnsupportedError):
        return PERMANENT, f"{msg} (not a media file or page yt-dlp understands)"
    text = msg.lower()
    if any(p in text for p in _TRANSIENT_FIRST):
        return TRANSIENT, msg
    if any(p in text for p in _PERMANENT):
        return PERMANENT, msg
    if any(p in text for p in _TRANSIENT):
        return TRANSIENT, msg
    return TRANSIENT, msg  # unknown: let a rerun try again; attempts are counted in the record
