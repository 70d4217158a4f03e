"""Time as a seam: traffic control reads and waits on a :class:`Clock`.

Every deadline in :mod:`gateway.traffic` is an absolute time on the clock's
:meth:`~Clock.monotonic` scale. Production uses :class:`MonotonicClock`; tests use
:class:`gateway.testing.FakeClock`, whose time moves only when the test says so, so that
rate arithmetic can be checked over simulated hours in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Reads monotonic seconds and waits for some of them to pass."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep` (the loop's clock)."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))
