"""The fake clock the traffic-control tests stand on, and the real one."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.clock import MonotonicClock
from gateway.testing import FakeClock


@pytest.mark.asyncio
async def test_fake_clock_wakes_sleepers_in_time_order() -> None:
    clock = FakeClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(nap(n, s)) for n, s in (("b", 2.0), ("a", 1.0), ("c", 3.0))]
    await asyncio.sleep(0)
    assert clock.sleepers == 3
    await clock.advance(2.5)
    assert woke == [("a", 1.0), ("b", 2.0)]
    assert clock.monotonic() == 2.5
    await clock.advance(1.0)
    assert woke[-1] == ("c", 3.0)
    await asyncio.gather(*tasks)


@pytest.mark.asyncio
async def test_auto_advance_moves_time_by_each_sleep() -> None:
    clock = FakeClock(start=10.0, auto_advance=True)
    await clock.sleep(0.5)
    await clock.sleep(0)
    await clock.sleep(1.5)
    assert clock.monotonic() == 12.0
    assert clock.slept == [0.5, 1.5]


@pytest.mark.asyncio
async def test_real_clock_sleeps_on_the_monotonic_scale() -> None:
    clock = MonotonicClock()
    before = clock.monotonic()
    assert abs(before - time.monotonic()) < 0.05
    await clock.sleep(-1)  # a negative wait is no wait
    await clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.009
