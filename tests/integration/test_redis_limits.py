"""Shared rate limits in a real redis-server: atomic script, many processes, Redis down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier

import pytest

from gateway.call import CallerKeys
from gateway.clock import MonotonicClock
from gateway.errors import Refused
from gateway.testing import FakeClock
from gateway.traffic.limits import LocalLimiter, RateLimit, caller_subject
from gateway.traffic.shared import RedisLimiter, redis_client, shared_limiter
from tests.support.redis_server import RedisServer

SECRET = "gk_live_0123456789abcdef"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def limiter_for(
    server: RedisServer,
    global_limit: RateLimit | None,
    caller_limit: RateLimit | None = None,
    *,
    replicas: int = 1,
    clock: MonotonicClock | FakeClock | None = None,
) -> RedisLimiter:
    return shared_limiter(
        server.url,
        clock or MonotonicClock(),
        global_limit,
        caller_limit,
        replicas=replicas,
        retry_interval=1.0,
    )


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def admitted_now(limiter: RedisLimiter, key: str = "") -> bool:
    try:
        await limiter.acquire(key, 1, limiter.clock.monotonic())
    except Refused:
        return False
    return True


@pytest.mark.asyncio
async def test_burst_then_refusal_from_the_script(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, RateLimit(rate=10, burst=5))
    try:
        assert [await admitted_now(limiter) for _ in range(6)] == [True] * 5 + [False]
        with pytest.raises(Refused) as caught:
            await limiter.acquire("", 1, limiter.clock.monotonic() + 0.01)
        assert caught.value.reason == "GATEWAY_RATE_LIMITED"
        assert caught.value.quota_subject == "global"
        assert 0.05 < caught.value.retry_after <= 0.1  # type: ignore[operator]
        assert limiter.stats.redis_errors == 0
    finally:
        await limiter.aclose()


@pytest.mark.asyncio
async def test_caller_buckets_are_hashed_and_namespaced(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, RateLimit(1000, 1000), RateLimit(rate=1, burst=1))
    digest = CallerKeys(b"salt" * 8).key(f"Bearer {SECRET}")
    try:
        assert await admitted_now(limiter, digest)
        with pytest.raises(Refused) as caught:
            await limiter.acquire(digest, 1, limiter.clock.monotonic())
        assert caught.value.quota_subject == caller_subject(digest)
        assert await admitted_now(limiter, "someone else")
        keys = sorted(
            k.decode() if isinstance(k, bytes) else k for k in await limiter.client.keys("*")
        )
        assert f"gagiteck-gateway:{{rl}}:caller:{digest}" in keys
        assert "gagiteck-gateway:{rl}:global" in keys
        assert all(k.startswith("gagiteck-gateway:{rl}:") and SECRET not in k for k in keys)
        ttl = await limiter.client.pttl(f"gagiteck-gateway:{{rl}}:caller:{digest}")
        assert 0 < ttl <= 2100  # gone once the bucket is full again
    finally:
        await limiter.aclose()


@pytest.mark.asyncio
async def test_waiting_is_shared_between_limiters(redis_server: RedisServer) -> None:
    first = limiter_for(redis_server, RateLimit(rate=20, burst=1))
    second = limiter_for(redis_server, RateLimit(rate=20, burst=1))
    try:
        start = time.monotonic()
        await first.acquire("", 1, None)
        await second.acquire("", 1, start + 1)  # waits for the slot 50 ms later
        await first.acquire("", 1, start + 1)  # and the next one, 50 ms after that
        assert 0.08 <= time.monotonic() - start < 0.5
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.asyncio
async def test_cancelled_waiter_gives_its_reservation_back(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, RateLimit(rate=5, burst=1))
    try:
        await limiter.acquire("", 1, None)
        waiter = asyncio.create_task(limiter.acquire("", 1, None))  # reserved for +200 ms
        await asyncio.sleep(0.02)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0.02)  # the refund runs in the background
        assert limiter.stats.refunds == 1
        with pytest.raises(Refused) as caught:
            await limiter.acquire("", 1, limiter.clock.monotonic())
        assert caught.value.retry_after < 0.2  # type: ignore[operator]  # not 0.2 + 0.2
    finally:
        await limiter.aclose()


@pytest.mark.asyncio
async def test_a_caller_waiting_on_its_own_bucket_books_nothing_shared(
    redis_server: RedisServer,
) -> None:
    """Issue 12, item 1, through the script: a 1/s caller's queued calls once booked the
    global bucket a minute ahead, for every process sharing it."""
    limiter = limiter_for(redis_server, RateLimit(rate=100, burst=10), RateLimit(1, 1))
    other_process = limiter_for(redis_server, RateLimit(rate=100, burst=10), RateLimit(1, 1))
    deadline = limiter.clock.monotonic() + 60
    greedy = [asyncio.create_task(limiter.acquire("greedy", 1, deadline)) for _ in range(60)]
    try:
        await asyncio.sleep(0.2)
        assert sum(task.done() for task in greedy) == 1
        # nine other callers, through another process, pass at once: the rest of the burst
        for number in range(9):
            assert await admitted_now(other_process, f"polite-{number}")
        # the greedy caller's own next calls go at its own 1/s, no faster
        started = time.monotonic()
        await asyncio.sleep(1.5)
        done = sum(task.done() for task in greedy)
        assert 2 <= done <= 2 + int(time.monotonic() - started)
    finally:
        for task in greedy:
            task.cancel()
        await asyncio.gather(*greedy, return_exceptions=True)
        await limiter.aclose()
        await other_process.aclose()


@pytest.mark.asyncio
async def test_a_refusal_by_the_global_bucket_after_the_own_wait_refunds_the_own(
    redis_server: RedisServer,
) -> None:
    limiter = limiter_for(redis_server, RateLimit(rate=10, burst=1), RateLimit(rate=5, burst=1))
    others: list[asyncio.Task[None]] = []
    try:
        await limiter.acquire("a", 1, None)  # own bucket until +0.2 s, global until +0.1 s
        start = limiter.clock.monotonic()
        waiting = asyncio.create_task(limiter.acquire("a", 1, start + 0.25))  # own: +0.2
        await asyncio.sleep(0.02)
        # meanwhile four other callers book the global bucket up to +0.5 s
        others = [asyncio.create_task(limiter.acquire(f"b{n}", 1, None)) for n in range(4)]
        with pytest.raises(Refused) as caught:
            await waiting
        assert caught.value.quota_subject == "global"
        await asyncio.gather(*others)
        await asyncio.sleep(0.05)  # the refund runs in the background
        assert limiter.stats.refunds == 1
    finally:
        for task in others:
            task.cancel()
        await limiter.aclose()


@pytest.mark.asyncio
async def test_script_is_sent_again_after_noscript(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, RateLimit(rate=100, burst=100))
    try:
        assert await admitted_now(limiter)
        await limiter.client.script_flush()
        assert await admitted_now(limiter)  # EVALSHA → NOSCRIPT → EVAL
        assert await admitted_now(limiter)  # cached again
        assert limiter.stats.redis_errors == 0
        assert limiter.stats.fallback_calls == 0
    finally:
        await limiter.aclose()


# --------------------------------------------------------------------------- many processes


@dataclass(frozen=True)
class WorkerResult:
    admitted: int
    offered: int
    first: float
    last: float
    redis_errors: int


RATE, BURST, SECONDS, PROCESSES = 200.0, 10.0, 2.5, 4


def offer_load(url: str, barrier: Barrier, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One gateway process: offers the whole quota on its own (4 of them: 4x the quota)."""
    results.put(asyncio.run(_offer(url, barrier)))


async def _offer(url: str, barrier: Barrier) -> WorkerResult:
    clock = MonotonicClock()
    limiter = shared_limiter(url, clock, RateLimit(RATE, BURST), None, replicas=PROCESSES)
    await limiter.client.ping()
    await asyncio.to_thread(barrier.wait)
    start = time.time()
    admitted = offered = 0
    while (now := time.time()) < start + SECONDS:
        offered += 1
        try:
            await limiter.acquire("", 1, clock.monotonic())
            admitted += 1
        except Refused:
            pass
        await asyncio.sleep(max(start + offered / RATE - time.time(), 0))
    await limiter.aclose()
    return WorkerResult(admitted, offered, start, now, limiter.stats.redis_errors)


@pytest.mark.slow
def test_four_processes_share_one_quota(redis_server: RedisServer) -> None:
    # A fork server imports this module once and forks clean, single-threaded workers:
    # four spawned interpreters would each spend ~0.6 s importing grpc and redis.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    workers = [
        context.Process(target=offer_load, args=(redis_server.url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=30)
        done = [results.get(timeout=SECONDS + 30) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    admitted = sum(r.admitted for r in done)
    offered = sum(r.offered for r in done)
    span = max(r.last for r in done) - min(r.first for r in done)
    quota = BURST + RATE * span
    assert all(r.redis_errors == 0 for r in done)
    assert offered >= 3.5 * quota  # the load really was about 4x the quota
    assert admitted <= quota + 1
    assert admitted == pytest.approx(quota, rel=0.02)


# --------------------------------------------------------------------------- Redis down


@pytest.mark.asyncio
async def test_redis_down_falls_back_to_this_process_share_then_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.redis_limits")
    clock = FakeClock(start=0.0)
    limiter = limiter_for(redis_server, RateLimit(rate=100, burst=20), clock=clock)
    try:
        # three other live gateway processes share the quota with this one
        seconds_ahead = (await limiter.client.time())[0] + 3600
        members = {f"other-{n}": seconds_ahead * 1000 for n in range(3)}
        await limiter.client.zadd("gagiteck-gateway:{rl}:members", members)
        limiter.start()
        await _until(lambda: limiter.members == 4)
        assert await admitted_now(limiter)
        redis_server.stop()
        # 50 simulated seconds of 4x the whole quota offered to this one process
        admitted, step, seconds = 0, 1 / 400, 50
        for i in range(int(seconds / step)):
            clock.now = i * step
            if await admitted_now(limiter):
                admitted += 1
                assert admitted <= 5 + 25 * clock.now + 1e-6  # share: burst 5, 25 a second
        assert admitted == pytest.approx(25 * seconds, rel=0.01)
        assert limiter.stats.fallback_calls >= admitted  # the local share answered them
        assert 40 <= limiter.stats.redis_errors <= 52  # one probe a second, no more
        redis_server.start()  # same port
        clock.now += 1.0
        calls = limiter.stats.redis_calls
        assert await admitted_now(limiter)
        assert limiter.stats.redis_calls == calls + 1  # the probe, and it went through
        fallback = limiter.stats.fallback_calls
        assert await admitted_now(limiter)
        assert limiter.stats.fallback_calls == fallback  # Redis decides again
    finally:
        await limiter.aclose()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "INFO"]
    assert "share of the quota" in messages[0][1]


@pytest.mark.asyncio
async def test_redis_that_hangs_costs_one_timeout_not_a_stall(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, RateLimit(rate=100, burst=20), replicas=4)
    try:
        assert await admitted_now(limiter)
        redis_server.pause()
        start = time.monotonic()
        for _ in range(5):
            assert await admitted_now(limiter)  # from the fallback's share
        assert time.monotonic() - start < 0.5  # one 100 ms timeout, then no more asking
        assert limiter.stats.redis_errors == 1
        assert limiter.stats.fallback_calls == 5
    finally:
        redis_server.resume()
        await limiter.aclose()


@pytest.mark.asyncio
async def test_unreachable_from_the_start_still_limits() -> None:
    with RedisServer() as server:
        url = server.url
    limiter = RedisLimiter(
        redis_client(url),
        MonotonicClock(),
        fallback=shared_limiter(url, MonotonicClock(), RateLimit(1, 2), None, replicas=1).fallback,
        global_limit=RateLimit(1, 2),
    )
    try:
        assert [await admitted_now(limiter) for _ in range(3)] == [True, True, False]
    finally:
        await limiter.aclose()


CLOSE_WAIT = "08"


def _sockets_to(port: int, state: str | None = None) -> int:
    """This process's TCP sockets whose remote port is ``port`` (in ``state``, if given:
    the hex code of /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += state is None or fields[3] == state
    return count


@pytest.mark.asyncio
async def test_the_redis_pool_is_bounded_shrinks_and_drops_dead_sockets(
    redis_server: RedisServer,
) -> None:
    """Issue 15, item 3: the pool grew to its peak and never shrank, and kept dead sockets
    after Redis restarted until they were next used."""
    limiter = RedisLimiter(
        # A generous timeout: this test is about dead sockets, and 200 calls queued on four
        # connections can take more than half a second on a loaded machine.
        redis_client(redis_server.url, timeout=5.0, max_connections=4),
        MonotonicClock(),
        fallback=LocalLimiter(MonotonicClock(), RateLimit(1e6, 1e6)),
        global_limit=RateLimit(1e6, 1e6),
        timeout=5.0,
        retry_interval=0.2,
        idle_timeout=0.5,
        heartbeat=0.1,
    )
    try:
        await asyncio.gather(*(limiter.acquire("", 1, None) for _ in range(200)))
        peak = _sockets_to(redis_server.port)
        assert 1 <= peak <= 4  # bounded
        await asyncio.sleep(0.8)
        assert _sockets_to(redis_server.port) <= 1  # idle ones closed (one heartbeats)
        await asyncio.gather(*(limiter.acquire("", 1, None) for _ in range(200)))
        before = _sockets_to(redis_server.port)
        redis_server.stop()
        redis_server.start()  # the same port: every pooled socket is now dead
        # A restart is not an outage: a command on a dead connection is sent again on a new
        # one, so the calls are answered by Redis and nothing falls back.
        await asyncio.gather(*(limiter.acquire("", 1, None) for _ in range(200)))
        assert limiter.stats.redis_errors == 0
        assert limiter.stats.fallback_calls == 0
        await asyncio.sleep(0.8)  # and the dead sockets left idle are closed
        assert _sockets_to(redis_server.port, CLOSE_WAIT) == 0
        assert _sockets_to(redis_server.port) <= max(before, 4)
        redis_server.stop()  # a real outage: the failure closes the idle connections at once
        deadline = time.monotonic() + 5
        while limiter.stats.redis_errors == 0 and time.monotonic() < deadline:
            await limiter.acquire("", 1, None)
        assert limiter.stats.redis_errors >= 1
        await asyncio.sleep(0.05)
        assert _sockets_to(redis_server.port) == 0
    finally:
        await limiter.aclose()
    assert _sockets_to(redis_server.port) == 0


@pytest.mark.asyncio
async def test_the_outage_share_follows_the_live_members(redis_server: RedisServer) -> None:
    """Issue 13: the share while Redis is away came from a hand-set replica count."""
    limit = RateLimit(rate=120, burst=12)

    def member() -> RedisLimiter:
        limiter = shared_limiter(redis_server.url, MonotonicClock(), limit, None, replicas=1)
        limiter.heartbeat = 0.05
        return limiter

    limiters = [member() for _ in range(3)]
    try:
        for limiter in limiters:
            limiter.start()
        await asyncio.sleep(0.3)  # a few heartbeats: each has seen all three
        assert [limiter.members for limiter in limiters] == [3, 3, 3]
        fallback = limiters[0].fallback
        assert isinstance(fallback, LocalLimiter)
        assert fallback.global_limit == limit.share(3)
        await limiters[2].aclose()  # one leaves: the others' share grows
        await asyncio.sleep(0.3)
        assert [limiter.members for limiter in limiters[:2]] == [2, 2]
        assert fallback.global_limit == limit.share(2)
        redis_server.stop()  # Redis gone: the last count holds
        await asyncio.sleep(0.3)
        assert limiters[0].members == 2
    finally:
        for limiter in limiters[:2]:
            await limiter.aclose()
