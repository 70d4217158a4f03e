"""Local token buckets (GCRA): admission, refusal at the deadline, accuracy, hygiene."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.call import CallerKeys
from gateway.config.parsers import costs
from gateway.errors import Refused
from gateway.status import to_status
from gateway.testing import FakeClock
from gateway.traffic.limits import (
    CostTable,
    Gcra,
    LocalLimiter,
    RateLimit,
    Reservation,
    caller_subject,
)

SECRET = "gk_live_0123456789abcdef"


def details(error: Refused) -> status_pb2.Status:
    status = status_pb2.Status()
    trailing = dict(to_status(error, "req-1").trailing_metadata)
    raw = trailing["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    status.ParseFromString(raw)
    return status


def unpack(status: status_pb2.Status, kind: type) -> list:  # type: ignore[type-arg]
    found = []
    for packed in status.details:
        message = kind()
        if packed.Unpack(message):
            found.append(message)
    return found


async def offer(limiter: LocalLimiter, clock: FakeClock, key: str = "", cost: float = 1) -> bool:
    """One call that accepts no wait: True when admitted now."""
    try:
        await limiter.acquire(key, cost, clock.monotonic())
    except Refused:
        return False
    return True


# --------------------------------------------------------------------------- values


def test_rate_limit_validates_and_shares() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(0, 5)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(1, 0.5)
    assert RateLimit(100, 20).share(4) == RateLimit(25, 5)
    assert RateLimit(100, 2).share(4) == RateLimit(25, 1.0)  # never below one call
    with pytest.raises(ValueError, match="parts"):
        RateLimit(1, 1).share(0)


def test_caller_subject_is_a_short_hash_never_the_credential() -> None:
    digest = CallerKeys(b"s" * 32).key(f"Bearer {SECRET}")
    assert len(digest) == 64
    assert caller_subject(digest) == f"caller:{digest[:12]}"
    assert SECRET not in caller_subject(digest)


@pytest.mark.parametrize(
    ("method", "cost"),
    [
        ("/gagiteck.v1.AgentService/RunAgent", 5.0),
        ("/gagiteck.v1.AgentService/ListAgents", 2.0),
        ("/gagiteck.v1.SearchService/Search", 3.0),
        ("/gagiteck.v1.WorkflowService/ListWorkflows", 1.0),
    ],
    ids=["bare-name", "service-slash-method", "fully-qualified", "default"],
)
def test_cost_table_most_specific_match(method: str, cost: float) -> None:
    table = CostTable(
        overrides=dict(
            costs(
                "RunAgent=5, AgentService/ListAgents=2,"
                " /gagiteck.v1.SearchService/Search=3, Search=9"
            )
        )
    )
    assert table.cost(method) == cost


@pytest.mark.parametrize("text", ["RunAgent", "=3", "RunAgent=fast", "RunAgent=-1", "RunAgent=inf"])
def test_parse_costs_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"METHOD=COST|not a number|non-negative"):
        costs(text)


def test_cost_table_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        CostTable(default=-1)


# --------------------------------------------------------------------------- admission


@pytest.mark.asyncio
async def test_no_limits_admit_everything() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock)
    for _ in range(1000):
        await limiter.acquire(SECRET, 1, clock.monotonic())
    assert limiter.callers == 0


@pytest.mark.asyncio
async def test_burst_then_refusal_with_retry_info_and_quota_failure() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock, RateLimit(rate=10, burst=5))
    assert [await offer(limiter, clock) for _ in range(6)] == [True] * 5 + [False]
    with pytest.raises(Refused) as caught:
        await limiter.acquire("", 1, clock.monotonic() + 0.05)
    error = caught.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "GATEWAY_RATE_LIMITED"
    assert error.retry_after == pytest.approx(0.1)
    status = details(error)
    (retry,) = unpack(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToTimedelta().total_seconds() == pytest.approx(0.1)
    (quota,) = unpack(status, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "global"


@pytest.mark.asyncio
async def test_caller_bucket_names_the_caller_by_hash_only() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(clock, RateLimit(1000, 1000), RateLimit(rate=1, burst=2))
    key = CallerKeys(b"s" * 32).key(f"Bearer {SECRET}")
    assert await offer(limiter, clock, key)
    assert await offer(limiter, clock, key)
    with pytest.raises(Refused) as caught:
        await limiter.acquire(key, 1, clock.monotonic() + 0.5)
    error = caught.value
    assert error.quota_subject == caller_subject(key)
    assert error.retry_after == pytest.approx(1.0)
    wire = repr(to_status(error, "req-1"))
    assert SECRET not in wire
    assert SECRET not in error.message
    # another caller is not held back by the first one's bucket
    assert await offer(limiter, clock, "another-key")
    assert await offer(limiter, clock, "")  # no credential: global bucket only


@pytest.mark.asyncio
async def test_waits_when_the_deadline_allows() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=2, burst=1))
    await limiter.acquire("", 1, None)
    admitted_at: list[float] = []

    async def call(deadline: float | None) -> None:
        await limiter.acquire("", 1, deadline)
        admitted_at.append(clock.monotonic())

    tasks = [asyncio.create_task(call(d)) for d in (None, 10.0, 10.0)]
    await asyncio.sleep(0)
    assert limiter.stats.delayed == 3
    await clock.advance(2.0)
    await asyncio.gather(*tasks)
    assert admitted_at == [0.5, 1.0, 1.5]


@pytest.mark.asyncio
async def test_global_and_caller_buckets_admit_at_one_time_or_spend_nothing() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=10, burst=1), RateLimit(rate=1, burst=1))
    await limiter.acquire(SECRET, 1, None)
    with pytest.raises(Refused) as caught:  # the caller bucket needs 1 s, deadline 0.5 s
        await limiter.acquire(SECRET, 1, 0.5)
    assert caught.value.quota_subject.startswith("caller:")  # type: ignore[union-attr]
    # the refusal spent nothing from the global bucket: another caller passes at 0.1 s
    with pytest.raises(Refused) as early:
        await limiter.acquire("other", 1, 0.05)
    assert early.value.quota_subject == "global"
    assert early.value.retry_after == pytest.approx(0.1)


@pytest.mark.asyncio
async def test_cost_counts_and_is_capped_at_the_burst() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=10, burst=10))
    assert await offer(limiter, clock, cost=6)
    assert not await offer(limiter, clock, cost=6)
    assert await offer(limiter, clock, cost=4)
    await clock.advance(10)
    assert await offer(limiter, clock, cost=50)  # charged as the whole burst
    assert not await offer(limiter, clock, cost=1)


@pytest.mark.asyncio
async def test_cancelled_waiter_gives_its_reservation_back() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=1, burst=1))
    await limiter.acquire("", 1, None)
    waiter = asyncio.create_task(limiter.acquire("", 1, None))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await clock.advance(1.0)
    assert await offer(limiter, clock)  # admitted at 1.0, as if the waiter never came
    assert limiter.stats.admitted == 2


def test_only_the_latest_reservation_is_given_back() -> None:
    bucket = Gcra(RateLimit(rate=1, burst=1))
    first = bucket.reserve(0.0, 1)
    second = bucket.reserve(1.0, 1)
    first.cancel()  # a later reservation stands on it: kept (conservative)
    assert bucket.tat == 2.0
    second.cancel()
    assert bucket.tat == 1.0


@pytest.mark.asyncio
async def test_caller_buckets_are_bounded_and_only_full_ones_are_forgotten() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, None, RateLimit(rate=1, burst=1), max_callers=2)
    assert await offer(limiter, clock, "a")
    assert await offer(limiter, clock, "b")
    assert not await offer(limiter, clock, "a")  # a's bucket is spent
    # c finds both buckets in debt: it shares the overflow bucket, nobody is forgotten
    assert await offer(limiter, clock, "c")
    assert limiter.callers == 2
    assert limiter.stats.overflowed == 1
    assert not await offer(limiter, clock, "d")  # the overflow bucket is spent too
    await clock.advance(5)
    assert await offer(limiter, clock, "d")  # takes the place of a full bucket (b or a)
    assert limiter.callers == 2


@pytest.mark.asyncio
async def test_a_caller_rotating_identities_stays_within_the_bound() -> None:
    """Issue 15, item 4: forgetting a bucket in debt and handing its caller a fresh one
    made the per-caller limit no bound for a caller rotating enough identities."""
    clock = FakeClock(start=0.0)
    places, rate, seconds = 100, 1.0, 10
    limiter = LocalLimiter(clock, None, RateLimit(rate=rate, burst=1), max_callers=places)
    admitted = 0
    for tick in range(seconds * 100):  # 5,000 identities, each tried twice, over 10 s
        for identity in range(5):
            admitted += await offer(limiter, clock, f"rotating-{(tick * 5 + identity) % 2500}")
        await clock.advance(0.01)
    # at most every place of the table and the overflow bucket, each within its limit
    assert admitted <= (places + 1) * (1 + rate * seconds)
    assert admitted > places  # the table's places were used


# --------------------------------------------------------------------------- accuracy


@pytest.mark.asyncio
async def test_rate_accuracy_over_a_long_run_with_four_times_the_load() -> None:
    clock = FakeClock(start=0.0)
    rate, burst, seconds = 100.0, 10.0, 100
    limiter = LocalLimiter(clock, RateLimit(rate, burst))
    admitted = 0
    step = 1 / (4 * rate)
    for i in range(int(seconds / step)):
        clock.now = i * step
        if await offer(limiter, clock):
            admitted += 1
            assert admitted <= burst + rate * clock.now + 1e-6
    assert admitted == pytest.approx(rate * seconds, rel=0.01)


@pytest.mark.asyncio
async def test_rate_accuracy_when_callers_wait_their_turn() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=50, burst=5))
    admitted_at: list[float] = []

    async def call() -> None:
        try:
            await limiter.acquire("", 1, clock.monotonic() + 0.5)
        except Refused:
            return
        admitted_at.append(clock.monotonic())

    tasks: list[asyncio.Task[None]] = []
    for _ in range(200):  # 20 s at 200 offered a second, 4x the rate
        tasks += [asyncio.create_task(call()) for _ in range(20)]
        await clock.advance(0.1)
    await clock.advance(1.0)
    await asyncio.gather(*tasks)
    inside = [t for t in admitted_at if t < 20.0]
    assert len(inside) == pytest.approx(50 * 20, rel=0.01)
    assert all(t <= 20.5 for t in admitted_at)
    assert_bounded(admitted_at, [1.0] * len(admitted_at), rate=50, burst=5)


def assert_bounded(times: list[float], costs: list[float], rate: float, burst: float) -> None:
    """For every interval [s, e] between admissions: cost inside <= burst + rate * (e - s)."""
    pairs = sorted(zip(times, costs, strict=True))
    for i, (start, _) in enumerate(pairs):
        total = 0.0
        for end, cost in pairs[i:]:
            total += cost
            assert total <= burst + rate * (end - start) + 1e-6, (start, end, total)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst=st.floats(1, 20),
    events=st.lists(
        st.tuples(
            st.floats(0, 2),  # time since the previous arrival
            st.floats(0.1, 5),  # cost
            st.floats(0, 3),  # longest acceptable wait
            st.integers(0, 3),  # then cancel the n-th latest call still waiting (0: none)
        ),
        max_size=60,
    ),
)
def test_gcra_never_admits_more_than_burst_plus_rate_times_time(
    rate: float, burst: float, events: list[tuple[float, float, float, int]]
) -> None:
    bucket = Gcra(RateLimit(rate, burst))
    now = 0.0
    admitted: list[tuple[float, float, Reservation]] = []
    for gap, cost, patience, cancel in events:
        now += gap
        at = bucket.admission_time(now, cost)
        if at - now > patience:
            continue
        admitted.append((at, min(cost, burst), bucket.reserve(at, cost)))
        waiting = [entry for entry in admitted if entry[0] > now]
        if cancel and len(waiting) >= cancel:
            entry = waiting[-cancel]
            before = bucket.tat
            entry[2].cancel()
            if bucket.tat != before:  # given back: that call never happened
                admitted.remove(entry)
            # otherwise its spend stays: fewer admissions, never more
    assert_bounded([a for a, _, _ in admitted], [c for _, c, _ in admitted], rate, burst)


@pytest.mark.asyncio
async def test_a_caller_waiting_on_its_own_bucket_books_nothing_shared() -> None:
    """Issue 12, item 1: 60 queued calls of a 1/s caller once booked the global bucket a
    minute ahead, refusing every other caller until long after the greedy one left."""
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=100, burst=10), RateLimit(rate=1, burst=1))
    greedy = [asyncio.create_task(limiter.acquire("greedy", 1, 100.0)) for _ in range(60)]
    await asyncio.sleep(0)
    assert sum(task.done() for task in greedy) == 1
    # nine other callers are admitted at once: the rest of the global burst
    for number in range(9):
        assert await offer(limiter, clock, key=f"polite-{number}")
    await clock.advance(5.0)
    assert sum(task.done() for task in greedy) == 6  # its own 1/s, no more
    for task in greedy:
        task.cancel()
    await asyncio.gather(*greedy, return_exceptions=True)
    assert await offer(limiter, clock, key="someone-else")


@pytest.mark.asyncio
async def test_a_call_refused_by_the_global_bucket_after_its_own_wait_gives_both_back() -> None:
    clock = FakeClock(start=0.0)
    limiter = LocalLimiter(clock, RateLimit(rate=1, burst=1), RateLimit(rate=1, burst=1))
    await limiter.acquire("a", 1, None)  # both buckets spent until t=1
    waiting = asyncio.create_task(limiter.acquire("a", 1, 1.5))  # own bucket: t=1
    await asyncio.sleep(0)
    # meanwhile another caller books the global bucket up to t=2
    other = asyncio.create_task(limiter.acquire("b", 1, None))
    await clock.advance(1.2)
    with pytest.raises(Refused) as caught:
        await waiting
    assert caught.value.quota_subject == "global"
    await other
    assert limiter.stats.refused == 1
    # "a" gave its own reservation back: it is admitted at once when the global bucket is
    await clock.advance(1.0)
    assert await offer(limiter, clock, key="a")
