"""What the tests substitute for time: a clock that moves only when told to.

Production code never imports this module; it lives in the package so that the tests of
every stage, and embedders' tests, share one fake clock with the production seam
(:class:`gateway.clock.Clock`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """A clock for tests; time stands still until :meth:`advance` (or a sleep) moves it.

    With ``auto_advance=False`` (the default) a sleeping task waits until the test calls
    :meth:`advance`, which moves time forward sleeper by sleeper, letting each woken task run
    before the next wake-up. With ``auto_advance=True`` every sleep moves time forward by its
    own length at once, which suits one task running a sequence of waits (a retry loop).
    """

    def __init__(self, start: float = 1000.0, *, auto_advance: bool = False) -> None:
        self.now = start
        self.auto_advance = auto_advance
        self.slept: list[float] = []
        """Every positive sleep requested, in order (for assertions on backoff)."""
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        self.slept.append(seconds)
        if self.auto_advance:
            self.now += seconds
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """Tasks currently waiting on this clock."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in order as their time comes."""
        until = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= until:
            wake_at, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake_at)
            if not future.done():
                future.set_result(None)
                await settle()
        self.now = until
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run until they block again (enough rounds for this package's code)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
