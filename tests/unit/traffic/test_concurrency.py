"""The in-flight limit and its bounded FIFO queue, on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.errors import Refused
from gateway.testing import FakeClock, settle
from gateway.traffic.concurrency import ConcurrencyLimiter


@contextlib.asynccontextmanager
async def holding(limiter: ConcurrencyLimiter, deadline: float | None) -> AsyncIterator[None]:
    """A slot held for the block, the way traffic control takes and gives one back."""
    await limiter.acquire(deadline)
    try:
        yield
    finally:
        limiter.release()


class Holder:
    """A task that takes a slot and keeps it until told to let go."""

    def __init__(self, limiter: ConcurrencyLimiter, deadline: float | None = None) -> None:
        self.got_slot = asyncio.Event()
        self.let_go = asyncio.Event()
        self.task = asyncio.create_task(self._run(limiter, deadline))

    async def _run(self, limiter: ConcurrencyLimiter, deadline: float | None) -> None:
        async with holding(limiter, deadline):
            self.got_slot.set()
            await self.let_go.wait()


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyLimiter(0, 1, FakeClock())
    with pytest.raises(ValueError, match="queue_size"):
        ConcurrencyLimiter(1, -1, FakeClock())


@pytest.mark.asyncio
async def test_limit_then_queue_then_refusal() -> None:
    limiter = ConcurrencyLimiter(limit=2, queue_size=2, clock=FakeClock())
    holders = [Holder(limiter) for _ in range(4)]
    await settle()
    assert [h.got_slot.is_set() for h in holders] == [True, True, False, False]
    assert (limiter.in_flight, limiter.waiting) == (2, 2)
    with pytest.raises(Refused) as caught:
        await limiter.acquire(None)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "GATEWAY_OVERLOADED"
    assert caught.value.error_metadata() == {"limit": "2", "queue_size": "2"}
    for holder in holders:
        holder.let_go.set()
    await asyncio.gather(*(h.task for h in holders))
    assert (limiter.in_flight, limiter.waiting) == (0, 0)
    assert limiter.stats.rejected_full == 1


@pytest.mark.asyncio
async def test_queue_is_first_come_first_served_and_newcomers_do_not_overtake() -> None:
    limiter = ConcurrencyLimiter(limit=1, queue_size=10, clock=FakeClock())
    first = Holder(limiter)
    await settle()
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        async with holding(limiter, None):
            order.append(n)

    waiters = []
    for n in range(5):
        waiters.append(asyncio.create_task(wait_turn(n)))
        await settle(2)
    first.let_go.set()
    await first.task
    late = asyncio.create_task(wait_turn(99))  # arrives while the queue drains
    await asyncio.gather(*waiters, late)
    assert order == [0, 1, 2, 3, 4, 99]


@pytest.mark.asyncio
async def test_waiter_whose_deadline_passes_leaves_with_deadline_exceeded() -> None:
    clock = FakeClock(start=0.0)
    limiter = ConcurrencyLimiter(limit=1, queue_size=5, clock=clock)
    holder = Holder(limiter)
    await settle()
    waiter = asyncio.create_task(limiter.acquire(2.0))
    await settle()
    assert limiter.waiting == 1
    await clock.advance(1.9)
    assert not waiter.done()
    await clock.advance(0.2)
    with pytest.raises(Refused) as caught:
        await waiter
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.reason == "GATEWAY_QUEUE_TIMEOUT"
    assert limiter.waiting == 0
    holder.let_go.set()
    await holder.task
    assert limiter.in_flight == 0  # the slot went to nobody, and is free


@pytest.mark.asyncio
async def test_past_deadline_is_refused_without_queueing() -> None:
    clock = FakeClock(start=5.0)
    limiter = ConcurrencyLimiter(limit=1, queue_size=5, clock=clock)
    await limiter.acquire(4.0)  # a free slot is taken whatever the deadline
    with pytest.raises(Refused) as caught:
        await limiter.acquire(5.0)
    assert caught.value.reason == "GATEWAY_QUEUE_TIMEOUT"
    assert limiter.waiting == 0


@pytest.mark.asyncio
async def test_cancelled_waiter_leaves_the_queue_and_leaks_nothing() -> None:
    limiter = ConcurrencyLimiter(limit=1, queue_size=1, clock=FakeClock())
    holder = Holder(limiter)
    await settle()
    waiter = asyncio.create_task(limiter.acquire(None))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0
    holder.let_go.set()
    await holder.task
    assert limiter.in_flight == 0


@pytest.mark.asyncio
async def test_waiter_cancelled_after_the_handover_passes_the_slot_on() -> None:
    limiter = ConcurrencyLimiter(limit=1, queue_size=5, clock=FakeClock())
    await limiter.acquire(None)
    unlucky = asyncio.create_task(limiter.acquire(None))
    lucky = asyncio.create_task(limiter.acquire(None))
    await settle()
    limiter.release()  # the slot is handed to `unlucky` ...
    unlucky.cancel()  # ... which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    await lucky  # the slot moved on
    assert (limiter.in_flight, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_flight == 0


@pytest.mark.asyncio
async def test_churn_of_timeouts_and_cancellations_never_exceeds_or_leaks() -> None:
    clock = FakeClock(start=0.0)
    limiter = ConcurrencyLimiter(limit=3, queue_size=4, clock=clock)
    rng = random.Random(7)
    peak = 0

    async def call() -> None:
        nonlocal peak
        try:
            async with holding(limiter, clock.monotonic() + rng.uniform(0, 2)):
                peak = max(peak, limiter.in_flight)
                assert limiter.in_flight <= 3
                await clock.sleep(rng.uniform(0, 1))
        except Refused:
            pass

    tasks: list[asyncio.Task[None]] = []
    for _ in range(300):
        tasks.append(asyncio.create_task(call()))
        if rng.random() < 0.2:
            rng.choice(tasks).cancel()
        await clock.advance(rng.uniform(0, 0.2))
    await clock.advance(10)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 3
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_three_times_the_capacity_keeps_latency_and_refuses_fast() -> None:
    clock = FakeClock(start=0.0)
    limiter = ConcurrencyLimiter(limit=4, queue_size=4, clock=clock)
    latencies: list[float] = []
    refused_after: list[float] = []

    async def call() -> None:
        start = clock.monotonic()
        try:
            async with holding(limiter, start + 5.0):
                await clock.sleep(0.1)  # the upstream takes 100 ms
        except Refused:
            refused_after.append(clock.monotonic() - start)
            return
        latencies.append(clock.monotonic() - start)

    # capacity: 4 in flight / 0.1 s = 40 calls a second; offered: 120 a second for 5 s
    tasks: list[asyncio.Task[None]] = []
    for _ in range(200):
        tasks += [asyncio.create_task(call()) for _ in range(3)]
        await clock.advance(0.025)
    await clock.advance(1)
    await asyncio.gather(*tasks)
    assert len(latencies) == pytest.approx(200, rel=0.05)
    assert max(latencies) <= 0.2 + 1e-9  # at most one turn in the queue
    assert refused_after
    assert max(refused_after) == 0.0
