"""A limit on upstream requests in flight, with a bounded first-come-first-served queue.

:meth:`ConcurrencyLimiter.acquire` takes one of ``limit`` slots (``try_acquire`` when one is
free at once) and ``release`` gives it back. When all are taken the call waits in a queue of
at most ``queue_size``; a call that finds the queue full is refused at once
(RESOURCE_EXHAUSTED, ``GATEWAY_OVERLOADED``), and a waiter whose deadline passes leaves the
queue with DEADLINE_EXCEEDED (``GATEWAY_QUEUE_TIMEOUT``). Under overload the admitted calls
keep their latency and the rest are told quickly.

A released slot is handed straight to the oldest waiter, so a newcomer cannot overtake the
queue. Cancellation is safe at every point: a waiter cancelled before it got a slot leaves
the queue; one cancelled just after a slot was handed to it passes the slot on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

import grpc

from gateway.clock import Clock
from gateway.errors import FailureReason, Refused


@dataclass
class ConcurrencyStats:
    admitted: int = 0
    queued: int = 0
    rejected_full: int = 0
    timed_out: int = 0


class ConcurrencyLimiter:
    """Up to ``limit`` holders at once and up to ``queue_size`` waiting (FIFO)."""

    def __init__(self, limit: int, queue_size: int, clock: Clock) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if queue_size < 0:
            raise ValueError("queue_size must not be negative")
        self.limit = limit
        self.queue_size = queue_size
        self.clock = clock
        self.stats = ConcurrencyStats()
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot when one is free and nobody waits; False: call :meth:`acquire`."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            self.stats.admitted += 1
            return True
        return False

    async def acquire(self, deadline: float | None) -> None:
        if self.try_acquire():
            return
        if len(self._waiters) >= self.queue_size:
            self.stats.rejected_full += 1
            raise self._refusal(
                f"the gateway is at its limit of {self.limit} upstream requests in flight "
                f"and {self.queue_size} waiting",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                FailureReason.GATEWAY_OVERLOADED,
            )
        if deadline is not None and deadline <= self.clock.monotonic():
            self.stats.timed_out += 1
            raise self._timeout()
        await self._wait(deadline)
        self.stats.admitted += 1

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; the count stays
                return
        self._in_flight -= 1

    async def _wait(self, deadline: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.stats.queued += 1
        timer: asyncio.Task[None] | None = None
        try:
            if deadline is None:
                await waiter
                return
            timer = asyncio.ensure_future(self.clock.sleep(deadline - self.clock.monotonic()))
            await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if waiter.done() and not waiter.cancelled():
            return
        self._abandon(waiter)
        self.stats.timed_out += 1
        raise self._timeout()

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        """Leave the queue; a slot that was already handed over is passed on."""
        if waiter.done() and not waiter.cancelled():
            self.release()
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _timeout(self) -> Refused:
        return self._refusal(
            "the call's deadline passed while it waited for an upstream slot",
            grpc.StatusCode.DEADLINE_EXCEEDED,
            FailureReason.GATEWAY_QUEUE_TIMEOUT,
        )

    def _refusal(self, message: str, code: grpc.StatusCode, reason: FailureReason) -> Refused:
        return Refused(
            message,
            code,
            reason,
            metadata={"limit": str(self.limit), "queue_size": str(self.queue_size)},
        )
