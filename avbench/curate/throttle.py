"""Politeness toward the hosts a download talks to: per-host concurrency and pacing, back-off with jitter
on 429/5xx (honouring Retry-After), and the split of a global bandwidth cap.

yt-dlp retries transport errors and 5xx *within* a media transfer, but not 429, not the first page
request of an extraction, and it never reads Retry-After; so avbench wraps each whole fetch in
`retry_fetch`, which retries only the classes a wait can cure. The schedule is seeded by the source id:
two runs wait the same, and sources that failed together do not retry in lockstep.

Limits are per process (threads share one `HostLimiter`): a SLURM array or Ray run with K workers
allows K times --per-host against one host; divide it by K there.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HostLimiter:
    """At most `per_host` fetches at once per host (`slot`), none starting before a host's Retry-After
    has passed, and requests to one host at least `interval_s` apart (`pace`, called right before each
    request: yt-dlp makes several per fetch, and its set-up time before the first varies too much for
    spacing fetch starts to space what the host sees)."""

    def __init__(self, per_host: int, interval_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_host = max(1, int(per_host))
        self.interval_s = max(0.0, float(interval_s))
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}
        self._not_before: dict[str, float] = {}

    def _semaphore(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))

    def pace(self, host: str) -> None:
        """Wait for this host's next request time. It is reserved under the lock and slept outside it,
        so concurrent callers line up `interval_s` apart instead of waking together."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start.get(host, now), self._not_before.get(host, now))
            self._next_start[host] = start + self.interval_s
        if start > now:
            self._sleep(start - now)

    def defer(self, host: str, seconds: float) -> None:
        """The host asked us (Retry-After) to wait: no fetch from it starts before then."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._not_before[host] = max(self._not_before.get(host, 0.0), until)

    def _wait_not_before(self, host: str) -> None:
        with self._lock:
            wait = self._not_before.get(host, 0.0) - self._clock()
        if wait > 0:
            self._sleep(wait)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._semaphore(host):
            self._wait_not_before(host)
            yield


_LIMITERS: dict[tuple[int, float], HostLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def host_limiter(per_host: int, interval_s: float) -> HostLimiter:
    """The process-wide limiter for these settings (the download stage is pickled for executors, so it
    cannot carry semaphores itself)."""
    key = (max(1, int(per_host)), max(0.0, float(interval_s)))
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, HostLimiter(*key))


@dataclass(frozen=True)
class Backoff:
    """Wait before retry n (0-based): base * 2**n, capped, times a jitter in [0.5, 1] drawn from a
    generator seeded by `seed`; a Retry-After from the server raises the wait to at least that
    (itself capped: a host asking for an hour gets `cap_s`, and the attempt fails if it still refuses)."""

    base_s: float
    cap_s: float
    seed: str

    def delay(self, n: int, retry_after_s: float | None = None) -> float:
        rng = random.Random(int.from_bytes(hashlib.sha256(f"{self.seed}:{n}".encode()).digest()[:8], "big"))
        wait = min(self.cap_s, self.base_s * 2**n) * rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            wait = max(wait, min(self.cap_s, retry_after_s))
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def split_bandwidth(total_bytes_s: float, concurrent: int) -> float:
    """yt-dlp's ratelimit is per download: a global cap gives each of the concurrent downloads its share
    (a download running alone then uses 1/jobs of the cap: simple and never over it)."""
    return max(1.0, total_bytes_s / max(1, concurrent))


def retry_fetch(fetch: Callable[[], T], *, host: str, limiter: HostLimiter, backoff: Backoff, retries: int,
                retryable: Callable[[BaseException], tuple[bool, float | None]],
                sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """(fetch()'s result, how many retries it took), each try inside a host slot. `retryable(exc)` says
    whether a wait may cure it and the server's Retry-After in seconds; anything else, or the last try's
    error, propagates."""
    for n in range(retries + 1):
        try:
            with limiter.slot(host):
                return fetch(), n
        except Exception as e:
            again, retry_after = retryable(e)
            if not again or n == retries:
                raise
            if retry_after is not None:
                limiter.defer(host, min(backoff.cap_s, retry_after))
            sleep(backoff.delay(n, retry_after))  # outside the slot: other sources may use the host meanwhile
    raise AssertionError("unreachable")
