"""The upstream's own rate-limit window, read from the headers of its answers.

Every answer may carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
``X-RateLimit-Reset`` (Unix seconds or milliseconds, or seconds from now when the number is
small) and, on 429 or 503, ``Retry-After`` (seconds or an HTTP date). This module is the
only reader of those headers: :func:`retry_delay` gives the wait an error answer asks for
(its RetryInfo, and the retry loop's least backoff), always finite and at most
:data:`MAX_DELAY`. :class:`UpstreamWindow` keeps what
they say; when the window is spent (``Remaining: 0`` with a known reset, or a 429) new
requests are held until the reset instead of being sent into 429s.
:meth:`UpstreamWindow.until_open` waits for that, or refuses at once with RetryInfo when the
reset comes after the caller's deadline.

Between answers the window counts its own admissions down from the last ``Remaining``, so a
burst of concurrent calls does not overshoot a nearly spent window. Holds only ever grow
(an answer that left before a 429 cannot reopen the window); every hold is capped at
``max_hold`` seconds so a broken header cannot stop traffic for long.

The upstream counts per API key: keep one window per credential the gateway sends
(:class:`WindowTable`), a single one when the gateway uses its own key.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import grpc

from gateway.clock import Clock
from gateway.errors import FailureReason, Refused

MAX_DELAY: Final = 86_400.0
"""The longest wait any header is taken to ask for; more is read as this (a day)."""
_UNIX_SECONDS_FLOOR: Final = 1e9
"""A reset above this is a Unix time; below it, seconds from now."""
_UNIX_MILLIS_FLOOR: Final = 1e12


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """What one answer said; delays are seconds from when it was read."""

    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    retry_after: float | None = None

    @property
    def retry_delay(self) -> float | None:
        """The wait an error answer asks for: ``Retry-After``, else the reset of a spent
        window (``X-RateLimit-Remaining`` 0 or absent)."""
        if self.retry_after is not None:
            return self.retry_after
        if self.remaining is None or self.remaining == 0:
            return self.reset_after
        return None


_RATE_HEADERS: Final = frozenset(
    {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"}
)


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> RateLimitHeaders:
    """Read the four headers (any case); ``now`` is the Unix time the answer arrived."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return RateLimitHeaders(
        limit=_count(lowered.get("x-ratelimit-limit")),
        remaining=_count(lowered.get("x-ratelimit-remaining")),
        reset_after=parse_reset(lowered.get("x-ratelimit-reset"), now),
        retry_after=parse_retry_after(lowered.get("retry-after"), now),
    )


def retry_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds an error answer asks the caller to wait (see :attr:`RateLimitHeaders.retry_delay`).

    ``headers`` in any case; ``now`` is the Unix time the answer arrived (default: now).
    """
    return parse_rate_limit_headers(headers, time.time() if now is None else now).retry_delay


def parse_reset(value: str | None, now: float) -> float | None:
    """Seconds until ``X-RateLimit-Reset``: a Unix time (s or ms) or a delay in seconds."""
    number = _number(value)
    if number is None:
        return None
    if number > _UNIX_MILLIS_FLOOR:
        number = number / 1000 - now
    elif number > _UNIX_SECONDS_FLOOR:
        number -= now
    return _delay(number)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds until ``Retry-After``: a delay in seconds or an HTTP date."""
    if value is None:
        return None
    number = _number(value)
    if number is not None:
        return _delay(number)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _delay(when.timestamp() - now)


def _delay(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_DELAY)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


class UpstreamWindow:
    """One upstream quota window (one API key) and the hold it imposes."""

    def __init__(
        self,
        clock: Clock,
        *,
        subject: str = "upstream",
        wall: Callable[[], float] = time.time,
        max_hold: float = 300.0,
        default_hold: float = 1.0,
    ) -> None:
        self.clock = clock
        self.subject = subject
        self.wall = wall
        self.max_hold = max_hold
        self.default_hold = default_hold
        """Hold after a 429 that names no Retry-After and no reset."""
        self.limit: int | None = None
        self.remaining: int | None = None
        self._reset_at: float | None = None
        self._closed_until = -math.inf

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take in one upstream answer's status and headers (names in lower case)."""
        if status != 429 and status != 503 and not _RATE_HEADERS.intersection(headers):
            return  # nothing said about the window (the common case without limits)
        now = self.clock.monotonic()
        said = parse_rate_limit_headers(headers, self.wall())
        if said.limit is not None:
            self.limit = said.limit
        if said.reset_after is not None:
            self._reset_at = now + min(said.reset_after, self.max_hold)
        if said.remaining is not None:
            self.remaining = said.remaining
        if status == 429 or (status == 503 and said.retry_after is not None):
            hold = said.retry_after if said.retry_after is not None else said.reset_after
            self._hold(now, self.default_hold if hold is None else hold)
            self.remaining = 0
        elif self.remaining == 0 and said.reset_after is not None:
            self._hold(now, said.reset_after)

    def try_pass(self) -> bool:
        """Count a request and say True when the window is open now; False: call until_open."""
        now = self.clock.monotonic()
        self._roll(now)
        if self._closed_until > now:
            return False
        self._spend(now)
        return True

    async def until_open(self, deadline: float | None) -> None:
        """Return when a request may be sent (counting it), or raise Refused at once."""
        while True:
            now = self.clock.monotonic()
            self._roll(now)
            wait = self._closed_until - now
            if wait <= 0:
                self._spend(now)
                return
            if deadline is not None and now + wait >= deadline:
                raise Refused(
                    f"the upstream's rate-limit window is spent; it reopens in {wait:.3f}s, "
                    "after the call's deadline",
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    FailureReason.UPSTREAM_QUOTA_SPENT,
                    retry_after=wait,
                    quota_subject=self.subject,
                    metadata={"window": self.subject},
                )
            await self.clock.sleep(wait)

    def _hold(self, now: float, seconds: float) -> None:
        self._closed_until = max(self._closed_until, now + min(seconds, self.max_hold))

    def _roll(self, now: float) -> None:
        """Start a fresh window once the announced reset has passed."""
        if self._reset_at is not None and now >= self._reset_at:
            self._reset_at = None
            self.remaining = self.limit

    def _spend(self, now: float) -> None:
        if self.remaining is None:
            return
        self.remaining = max(self.remaining - 1, 0)
        if self.remaining == 0 and self._reset_at is not None:
            self._hold(now, self._reset_at - now)


class WindowTable:
    """One :class:`UpstreamWindow` per key (e.g. a caller's digest), least recently used out."""

    def __init__(
        self, factory: Callable[[str], UpstreamWindow], *, max_windows: int = 10_000
    ) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be at least 1")
        self.factory = factory
        self.max_windows = max_windows
        self._windows: OrderedDict[str, UpstreamWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def get(self, key: str) -> UpstreamWindow:
        window = self._windows.get(key)
        if window is not None:
            self._windows.move_to_end(key)
            return window
        if len(self._windows) >= self.max_windows:
            self._windows.popitem(last=False)
        window = self._windows[key] = self.factory(key)
        return window
