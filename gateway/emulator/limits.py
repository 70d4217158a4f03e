"""Per-credential limits: a fixed request window and an in-flight ceiling.

A credential's window opens with its first request and lasts
`window_seconds`; the `X-RateLimit-*` headers describe it. Without a
configured limit the window is still counted, against a large advertised
limit, and never refuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int
    allowed: bool
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


@dataclass
class _Window:
    opened: float
    count: int = 0


class RateLimiter:
    """Fixed windows keyed by credential."""

    def __init__(
        self,
        limit: int | None,
        advertised: int,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limit = limit
        self._advertised = advertised
        self._window = window_seconds
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _current(self, bucket: str, now: float) -> _Window:
        window = self._windows.get(bucket)
        if window is None or now >= window.opened + self._window:
            window = self._windows[bucket] = _Window(now)
        return window

    def _quota(self, window: _Window, now: float, allowed: bool) -> Quota:
        ends = window.opened + self._window
        remaining = max(0, self._advertised - window.count)
        return Quota(
            self._advertised, remaining, math.ceil(ends), allowed, max(1, math.ceil(ends - now))
        )

    def hit(self, bucket: str) -> Quota:
        """Count one request; `allowed` is False once the window is used up."""
        now = self._clock()
        window = self._current(bucket, now)
        if self._limit is not None and window.count >= self._limit:
            return self._quota(window, now, False)
        window.count += 1
        return self._quota(window, now, True)

    def peek(self, bucket: str) -> Quota:
        """The bucket's state without counting a request."""
        now = self._clock()
        return self._quota(self._current(bucket, now), now, True)

    def clear(self) -> None:
        self._windows.clear()


class ConcurrencyLimiter:
    """At most `limit` requests in flight per credential (None: no ceiling)."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._in_flight: dict[str, int] = {}

    def acquire(self, bucket: str) -> bool:
        current = self._in_flight.get(bucket, 0)
        if self._limit is not None and current >= self._limit:
            return False
        self._in_flight[bucket] = current + 1
        return True

    def release(self, bucket: str) -> None:
        remaining = self._in_flight.get(bucket, 0) - 1
        if remaining > 0:
            self._in_flight[bucket] = remaining
        else:
            self._in_flight.pop(bucket, None)

    def in_flight(self, bucket: str) -> int:
        return self._in_flight.get(bucket, 0)
