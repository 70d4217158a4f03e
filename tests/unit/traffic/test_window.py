"""The upstream's rate-limit headers and the hold they impose, on a fake clock."""

from __future__ import annotations

import asyncio
import email.utils

import grpc
import pytest

from gateway.errors import Refused
from gateway.testing import FakeClock, settle
from gateway.traffic.window import (
    MAX_DELAY,
    RateLimitHeaders,
    UpstreamWindow,
    WindowTable,
    parse_rate_limit_headers,
    parse_reset,
    parse_retry_after,
    retry_delay,
)

WALL = 1_800_000_000.0


def window(clock: FakeClock, **kwargs: float) -> UpstreamWindow:
    return UpstreamWindow(clock, subject="upstream:test", wall=lambda: WALL, **kwargs)


async def hold_left(win: UpstreamWindow) -> float:
    """How long the window holds requests now: the wait a caller with no time left is
    refused with (0 when the window is open; that caller's request is then counted)."""
    try:
        await win.until_open(win.clock.monotonic())
    except Refused as refused:
        return refused.retry_after or 0.0
    return 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        ("0", 0.0),
        (str(int(WALL) + 42), 42.0),
        (str(int(WALL) - 5), 0.0),
        (str(int(WALL * 1000) + 1500), 1.5),
        ("soon", None),
        ("-3", None),
        ("nan", None),
        (None, None),
    ],
    ids=["delta", "zero", "unix", "unix-past", "unix-ms", "text", "negative", "nan", "absent"],
)
def test_parse_reset(value: str | None, seconds: float | None) -> None:
    assert parse_reset(value, WALL) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        (email.utils.formatdate(WALL + 90, usegmt=True), 90.0),
        (email.utils.formatdate(WALL - 90, usegmt=True), 0.0),
        ("Someday", None),
        (None, None),
    ],
    ids=["seconds", "fraction", "http-date", "http-date-past", "garbage", "absent"],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, WALL) == (
        pytest.approx(seconds) if seconds is not None else None
    )


def test_headers_are_read_in_any_case() -> None:
    said = parse_rate_limit_headers(
        {"X-RateLimit-Limit": "100", "x-ratelimit-remaining": "7", "X-RATELIMIT-RESET": "12",
         "Retry-After": "3"},
        WALL,
    )  # fmt: skip
    assert said == RateLimitHeaders(limit=100, remaining=7, reset_after=12.0, retry_after=3.0)


@pytest.mark.asyncio
async def test_spent_window_holds_until_the_reset() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(200, {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0",
                      "x-ratelimit-reset": "5"})  # fmt: skip
    assert await hold_left(win) == pytest.approx(5.0)
    waiter = asyncio.create_task(win.until_open(clock.monotonic() + 10))
    await settle()
    await clock.advance(4.9)
    assert not waiter.done()
    await clock.advance(0.2)
    await waiter
    assert win.remaining == 99  # a fresh window, this request counted


@pytest.mark.asyncio
async def test_reset_after_the_deadline_is_refused_at_once_with_retry_info() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(WALL) + 8)})
    with pytest.raises(Refused) as caught:
        await win.until_open(clock.monotonic() + 3)
    error = caught.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "UPSTREAM_QUOTA_SPENT"
    assert error.retry_after == pytest.approx(8.0)
    assert error.quota_subject == "upstream:test"
    assert clock.slept == []


@pytest.mark.asyncio
async def test_429_with_retry_after_sends_nothing_before_it() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(429, {"retry-after": "2"})
    sent_at: list[float] = []

    async def send() -> None:
        await win.until_open(clock.monotonic() + 30)
        sent_at.append(clock.monotonic())

    tasks = [asyncio.create_task(send()) for _ in range(3)]
    await settle()
    await clock.advance(5)
    await asyncio.gather(*tasks)
    assert len(sent_at) == 3
    assert min(sent_at) >= 2.0
    win.observe(429, {"retry-after": "2"})
    with pytest.raises(Refused):  # a caller with less time than that is told at once
        await win.until_open(clock.monotonic() + 1.0)


@pytest.mark.asyncio
async def test_429_without_headers_holds_for_the_default() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock, default_hold=1.5)
    win.observe(429, {})
    assert await hold_left(win) == pytest.approx(1.5)


@pytest.mark.asyncio
async def test_503_holds_only_with_retry_after() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(503, {})
    assert await hold_left(win) == 0
    win.observe(503, {"retry-after": "4"})
    assert await hold_left(win) == pytest.approx(4.0)


@pytest.mark.asyncio
async def test_holds_only_grow() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(429, {"retry-after": "10"})
    win.observe(200, {"x-ratelimit-remaining": "50", "x-ratelimit-reset": "1"})  # sent earlier
    assert await hold_left(win) == pytest.approx(10.0)


@pytest.mark.asyncio
async def test_holds_are_capped() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock, max_hold=60)
    win.observe(429, {"retry-after": "86400"})
    assert await hold_left(win) == pytest.approx(60.0)


@pytest.mark.asyncio
async def test_counts_its_own_requests_down_between_answers() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(200, {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "3",
                      "x-ratelimit-reset": "10"})  # fmt: skip
    for _ in range(3):
        await win.until_open(None)  # the last three of the window go at once
    assert await hold_left(win) == pytest.approx(10.0)
    late = asyncio.create_task(win.until_open(None))
    await settle()
    await clock.advance(10)
    await late
    assert win.remaining == 9


@pytest.mark.asyncio
async def test_no_headers_no_hold() -> None:
    clock = FakeClock(start=0.0)
    win = window(clock)
    win.observe(200, {})
    for _ in range(100):
        await win.until_open(clock.monotonic())
    assert win.remaining is None


def test_window_table_keeps_one_window_per_key_and_forgets_the_oldest() -> None:
    clock = FakeClock()
    table = WindowTable(lambda key: window(clock), max_windows=2)
    a = table.get("a")
    assert table.get("a") is a
    table.get("b")
    table.get("a")
    table.get("c")  # evicts b
    assert len(table) == 2
    assert table.get("a") is a
    with pytest.raises(ValueError, match="max_windows"):
        WindowTable(lambda key: window(clock), max_windows=0)


def test_retry_delay_sources() -> None:
    now = 1_700_000_000.0
    assert retry_delay({"retry-after": "3"}, now) == 3.0
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert retry_delay({"retry-after": date}, now) == pytest.approx(10.0, abs=1)
    reset = {"x-ratelimit-reset": str(int(now + 42)), "x-ratelimit-remaining": "0"}
    assert retry_delay(reset, now) == 42.0
    assert (
        retry_delay({"x-ratelimit-reset": str(int(now + 42)), "x-ratelimit-remaining": "5"}, now)
        is None
    )
    assert retry_delay({}, now) is None
    assert retry_delay({"retry-after": "soon"}, now) is None
    millis = {"x-ratelimit-reset": str(int((now + 5) * 1000)), "x-ratelimit-remaining": "0"}
    assert retry_delay(millis, now) == pytest.approx(5.0)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-3", ""])
def test_unreadable_delays_are_ignored(value: str) -> None:
    assert retry_delay({"retry-after": value}, WALL) is None
    assert parse_reset(value, WALL) is None


@pytest.mark.parametrize("value", ["1e20", "99999999999999999999999", str(int(WALL + 10**9))])
def test_huge_delays_are_capped(value: str) -> None:
    assert retry_delay({"retry-after": value}, WALL) == MAX_DELAY


def test_a_date_far_in_the_future_is_capped() -> None:
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", WALL) == MAX_DELAY
