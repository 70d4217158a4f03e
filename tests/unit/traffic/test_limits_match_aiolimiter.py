"""Differential test: gateway/traffic/limits.py's GCRA buckets against aiolimiter's leaky bucket.

The project replaced aiolimiter with its own buckets; this file holds them to the library's
behaviour. ``RateLimit(rate, burst)`` is compared with ``AsyncLimiter(burst, burst / rate)``,
a bucket of ``burst`` drained at ``rate`` a second. Both run the same arrival sequences and
the tests compare which requests each admits at once and when each admits those that wait.

Time. aiolimiter reads ``loop.time()``, so each run happens on a :class:`VirtualTimeLoop`: a
selector event loop whose ``time()`` is a number that moves only when the loop would block,
and then straight to its next timer. No real time passes and nothing depends on the
machine's speed; our limiter reads the same loop time through :class:`LoopClock`.
aiolimiter itself is used as published (nothing of it is patched).

Exactness. Most tests use binary fractions only (rates 1/2 to 16, costs and bursts in
halves, arrivals on a 1/64 s grid), for which every sum and product either side computes is
exact: the two must agree to the bit, also for a request arriving at the very instant the
bucket has room for it. :func:`test_everyday_rates_differ_only_within_the_rounding_margin`
covers rates such as 3, 10 or 0.3 a second, where both round.

What holds (each is a test below):

* Admission at once (a caller who will not wait): the same requests. The one exception is
  by design: ours takes a wait under 1 ns (limits._EPSILON) for rounding noise and admits,
  where aiolimiter refuses; with everyday rates (3/s, 0.3/s) that is a request arriving
  exactly one refill after another, whose float arrival time is a rounding error early.
* Waits, all requests of one cost: the same admission instants, in the same order, and a
  caller whose deadline comes first is refused by us exactly when aiolimiter would have
  timed it out; a refusal's ``retry_after`` is exactly aiolimiter's wait.
* A wait ending exactly at the deadline: we refuse; aiolimiter does not admit before it.
* Waits with mixed costs: the two queue differently. aiolimiter serves the smallest waiting
  amount first and lets a newcomer with room pass the queue; ours is first come, first
  served (each waiter reserves its place). A request is admitted at a different instant
  only where aiolimiter served out of arrival order: later than aiolimiter when aiolimiter
  let it pass an earlier one, earlier when aiolimiter let a later one pass it. Both keep
  every window within ``burst + rate * length``.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, TypeVar

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.errors import Refused
from gateway.traffic.limits import LocalLimiter, RateLimit

T = TypeVar("T")

START = 1024.0
"""The virtual loop's time when a run begins."""
TICK = 1 / 64
"""Arrivals fall on this grid (seconds): a binary fraction, so all the arithmetic is exact."""
ROUNDING_MARGIN = 1e-9
"""The wait below which ours admits at once (gateway.traffic.limits._EPSILON: "seconds of
floating-point noise below which a wait is no wait"), and so the most it may be laxer than
aiolimiter."""
JITTER = 2.0**-20
"""Added ``index`` times to the n-th arrival where waits are compared, so that no arrival
shares its instant with a wake-up: which of two events due at one instant runs first is the
loop's choice, not either limiter's."""

# --------------------------------------------------------------------------- virtual time


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: where the loop would wait ``timeout`` seconds, time jumps instead."""

    def __init__(self, loop_time: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = loop_time

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: nothing is scheduled and the run is not finished")
        if timeout > 0:
            self._advance(timeout)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only from one timer to the next, at once."""

    def __init__(self) -> None:
        self.now = START
        super().__init__(_JumpingSelector(self._advance))

    def _advance(self, seconds: float) -> None:
        self.now += seconds

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Coroutine[None, None, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


class LoopClock:
    """gateway.clock.Clock on the running loop's time (which aiolimiter reads too)."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


async def sleep_until(when: float) -> None:
    loop = asyncio.get_running_loop()
    if when <= loop.time():
        return
    woken = loop.create_future()
    handle = loop.call_at(when, woken.set_result, None)
    try:
        await woken
    finally:
        handle.cancel()


# --------------------------------------------------------------------------- the two buckets


class Bucket(Protocol):
    async def take(self, cost: float, deadline: float | None) -> float | None:
        """Admit ``cost``: return None once admitted, or refuse it (the wait it would need).

        ``deadline`` None waits as long as needed; ``deadline == now`` admits at once or
        not at all."""
        ...


class Ours:
    def __init__(self, limit: RateLimit, bucket: str = "global") -> None:
        if bucket == "global":
            self.limiter = LocalLimiter(LoopClock(), global_limit=limit)
            self.key = ""
        else:
            self.limiter = LocalLimiter(LoopClock(), caller_limit=limit)
            self.key = "gk_test_caller"

    async def take(self, cost: float, deadline: float | None) -> float | None:
        try:
            await self.limiter.acquire(self.key, cost, deadline)
        except Refused as refused:
            return refused.retry_after if refused.retry_after is not None else float("nan")
        return None


class Theirs:
    def __init__(self, limit: RateLimit, bucket: str = "global") -> None:
        del bucket  # one bucket either way
        self.limiter = AsyncLimiter(limit.burst, limit.burst / limit.rate)

    async def take(self, cost: float, deadline: float | None) -> float | None:
        loop = asyncio.get_running_loop()
        if deadline is None:
            await self.limiter.acquire(cost)
        elif deadline <= loop.time():
            if not self.limiter.has_capacity(cost):
                return float("nan")  # aiolimiter does not say how long it would be
            await self.limiter.acquire(cost)  # has room: returns without waiting
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.limiter.acquire(cost)
            except TimeoutError:
                return float("nan")
        return None


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Arrival:
    at: float
    """Seconds after the start of the run."""
    cost: float
    patience: float | None = None
    """How long the caller waits at most (its deadline is ``at + patience``); 0 admits at
    once or not at all, None waits as long as it takes."""


@dataclass(frozen=True)
class Outcome:
    arrived: float
    """The loop time at arrival (absolute)."""
    decided: float
    """Seconds after the start when admitted or refused."""
    admitted: bool
    order: int
    """Rank among the admissions of the run (-1 when refused)."""
    retry_after: float | None = None
    """The wait a refusal names (ours) or NaN (aiolimiter's, which names none)."""

    @property
    def wait(self) -> float:
        return START + self.decided - self.arrived


def drive(
    make: Callable[[RateLimit, str], Bucket],
    limit: RateLimit,
    arrivals: Sequence[Arrival],
    bucket: str = "global",
) -> list[Outcome]:
    """Offer ``arrivals`` to a fresh bucket on a virtual loop; one outcome each, in order.

    Every arrival runs as its own task, started at its instant and in list order."""

    async def main() -> list[Outcome]:
        loop = asyncio.get_running_loop()
        target = make(limit, bucket)
        outcomes: list[Outcome | None] = [None] * len(arrivals)
        ranks = itertools.count()

        async def one(index: int, arrival: Arrival) -> None:
            arrived = loop.time()
            deadline = None if arrival.patience is None else arrived + arrival.patience
            refused = await target.take(arrival.cost, deadline)
            outcomes[index] = Outcome(
                arrived=arrived,
                decided=loop.time() - START,
                admitted=refused is None,
                order=next(ranks) if refused is None else -1,
                retry_after=refused,
            )

        tasks: list[asyncio.Task[None]] = []
        for index, arrival in enumerate(arrivals):
            await sleep_until(START + arrival.at)
            tasks.append(asyncio.create_task(one(index, arrival)))
            await asyncio.sleep(0)  # it starts before the next arrival, even one at this instant
        await asyncio.gather(*tasks)
        assert all(outcome is not None for outcome in outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    return run_virtual(main)


def assert_within_bound(limit: RateLimit, arrivals: Sequence[Arrival], run: list[Outcome]) -> None:
    """Every closed window [a, b] of admission instants holds at most burst + rate * (b - a)."""
    admitted = sorted((o.decided, a.cost) for a, o in zip(arrivals, run, strict=True) if o.admitted)
    for first, (begin, _) in enumerate(admitted):
        total = 0.0
        for end, cost in admitted[first:]:
            total += cost
            assert total <= limit.burst + limit.rate * (end - begin), (begin, end, total)


# --------------------------------------------------------------------------- strategies

# (rate, burst) pairs whose arithmetic is exact in binary floating point
EXACT_LIMITS = [
    RateLimit(0.5, 1),
    RateLimit(1, 1),
    RateLimit(1, 2),
    RateLimit(2, 3),
    RateLimit(4, 2.5),
    RateLimit(8, 5),
    RateLimit(16, 8),
]


def _costs(limit: RateLimit, zero: bool = True) -> st.SearchStrategy[float]:
    """Costs in halves up to the burst (aiolimiter refuses more than its capacity)."""
    lowest = 0 if zero else 1
    return st.integers(lowest, int(2 * limit.burst)).map(lambda halves: halves / 2)


def _gaps(limit: RateLimit) -> st.SearchStrategy[float]:
    """Seconds between arrivals: none, whole half-unit refills give or take a tick or two (so
    arrivals often come exactly when the bucket has room again, or just before or after),
    or any number of ticks up to five seconds."""
    half = 0.5 / limit.rate
    near = st.builds(
        lambda halves, ticks: max(halves * half + ticks * TICK, 0.0),
        st.integers(0, 6),
        st.integers(-2, 2),
    )
    return st.just(0.0) | near | st.integers(0, 320).map(lambda ticks: ticks * TICK)


_nudges = st.just(0.0) | st.builds(
    lambda sign, exponent: sign * 2.0**-exponent, st.sampled_from([-1, 1]), st.integers(10, 29)
)
"""Arrivals a little off the grid: from a millisecond down to 1.9 ns before or after it
(never nearer: a wait under ROUNDING_MARGIN is where the two are meant to differ)."""


@st.composite
def schedules(
    draw: st.DrawFn,
    *,
    uniform: bool,
    jitter: bool,
    patience: bool = False,
    at_once: bool = False,
    max_size: int = 24,
) -> tuple[RateLimit, list[Arrival]]:
    limit = draw(st.sampled_from(EXACT_LIMITS))
    costs = _costs(limit, zero=not uniform)
    one_cost = draw(costs)
    gaps = draw(st.lists(_gaps(limit), min_size=1, max_size=max_size))
    arrivals: list[Arrival] = []
    grid = 0.0
    nudge = 0.0
    for index, gap in enumerate(gaps):
        grid += gap
        if at_once and gap > 0:
            nudge = draw(_nudges)  # kept by the arrivals at the same instant
        at = grid + nudge + (index * JITTER if jitter else 0.0)
        cost = one_cost if uniform else draw(costs)
        wait: float | None = None
        if at_once:
            wait = 0.0
        elif patience:
            # off the grid by half a tick: never the very instant of a wake-up
            wait = draw(st.none() | st.integers(0, 400).map(lambda n: (n + 0.5) * TICK))
        arrivals.append(Arrival(at, cost, wait))
    return limit, arrivals


# --------------------------------------------------------------------------- admission at once


@settings(max_examples=120, deadline=None)
@given(
    case=schedules(uniform=False, jitter=False, at_once=True, max_size=40),
    bucket=st.sampled_from(["global", "caller"]),
)
@example(  # arriving exactly when the bucket has room again is in time, for both
    case=(
        RateLimit(1, 2),
        [Arrival(0, 2, 0.0), Arrival(1, 1, 0.0), Arrival(1, 0.5, 0.0), Arrival(2, 1, 0.0)],
    ),
    bucket="global",
)
def test_both_admit_the_same_requests_at_once(
    case: tuple[RateLimit, list[Arrival]], bucket: str
) -> None:
    limit, arrivals = case
    ours = drive(Ours, limit, arrivals, bucket)
    theirs = drive(Theirs, limit, arrivals, bucket)
    assert [o.admitted for o in ours] == [o.admitted for o in theirs]
    for arrival, mine in zip(arrivals, ours, strict=True):
        assert mine.decided == arrival.at  # at once, either way


_EVERYDAY_LIMITS = [
    RateLimit(3, 2.5),
    RateLimit(10, 20),
    RateLimit(100, 3),
    RateLimit(0.3, 1),
    RateLimit(7, 7),
    RateLimit(1 / 3, 2),
    RateLimit(100, 20).share(3),
]


@st.composite
def everyday_schedules(draw: st.DrawFn) -> tuple[RateLimit, list[Arrival]]:
    """Arrivals often exactly one refill apart (gaps of k / rate, k / (2 rate)...)."""
    limit = draw(st.sampled_from(_EVERYDAY_LIMITS))
    cost = st.sampled_from(sorted({1.0, 0.5, min(2.0, limit.burst), limit.burst}))
    refill = st.builds(
        lambda k, d: k / (d * limit.rate), st.integers(0, 6), st.sampled_from([1, 2, 10])
    )
    gap = refill | st.floats(0, 3 / limit.rate, allow_nan=False)
    arrivals: list[Arrival] = []
    at = 0.0
    for _ in range(draw(st.integers(1, 40))):
        at += draw(gap)
        arrivals.append(Arrival(at, draw(cost), 0.0))
    return limit, arrivals


def exact_waits(limit: RateLimit, run: list[Outcome], costs: Sequence[float]) -> list[Fraction]:
    """The exact GCRA wait of each request, on the history ``run`` admitted, computed with
    fractions from the very floats the loop handed out."""
    rate, burst = Fraction(limit.rate), Fraction(limit.burst)
    tat: Fraction | None = None
    waits = []
    for outcome, cost in zip(run, costs, strict=True):
        now = Fraction(outcome.arrived)
        base = now if tat is None or tat < now else tat
        waits.append(base + Fraction(cost) / rate - burst / rate - now)
        if outcome.admitted:
            tat = base + Fraction(cost) / rate
    return waits


@settings(max_examples=120, deadline=None)
@given(case=everyday_schedules())
def test_everyday_rates_differ_only_within_the_rounding_margin(
    case: tuple[RateLimit, list[Arrival]],
) -> None:
    """With rates that are not binary fractions both sides round. Up to the first request on
    which they disagree they agree, and that one is a request ours admits and aiolimiter
    refuses whose exact wait is positive but under ROUNDING_MARGIN (1 ns): ours takes
    such a wait for rounding noise by design, aiolimiter's ``level + amount <= max_rate``
    refuses it. (After such a request the two buckets hold different levels, so the
    comparison stops there.)"""
    limit, arrivals = case
    ours = drive(Ours, limit, arrivals)
    theirs = drive(Theirs, limit, arrivals)
    assert [o.arrived for o in ours] == [o.arrived for o in theirs]
    for index, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
        if mine.admitted == their.admitted:
            continue
        wait = exact_waits(limit, ours, [a.cost for a in arrivals])[index]
        assert (mine.admitted, their.admitted) == (True, False), index
        assert 0 < wait <= ROUNDING_MARGIN, (index, float(wait))
        break


@pytest.mark.parametrize(
    ("early", "ours_admits", "theirs_admits"),
    [
        pytest.param(0.0, True, True, id="on-time"),
        pytest.param(2.0**-29, False, False, id="1.9ns-early"),
        pytest.param(2.0**-31, True, False, id="0.47ns-early-ours-takes-it-for-noise"),
    ],
)
def test_a_request_arriving_a_hair_before_there_is_room(
    early: float, ours_admits: bool, theirs_admits: bool
) -> None:
    """The one request ours admits at once and aiolimiter refuses: a wait shorter than
    ROUNDING_MARGIN counts as none (exact arithmetic here; the margin is there for the
    rounding of everyday rates)."""
    limit = RateLimit(1, 1)
    arrivals = [Arrival(0, 1, 0.0), Arrival(1 - early, 1, 0.0)]
    assert drive(Ours, limit, arrivals)[1].admitted is ours_admits
    assert drive(Theirs, limit, arrivals)[1].admitted is theirs_admits


# --------------------------------------------------------------------------- waits


@settings(max_examples=100, deadline=None)
@given(case=schedules(uniform=True, jitter=True))
def test_equal_costs_wait_for_the_same_instants_in_the_same_order(
    case: tuple[RateLimit, list[Arrival]],
) -> None:
    limit, arrivals = case
    ours = drive(Ours, limit, arrivals)
    theirs = drive(Theirs, limit, arrivals)
    assert all(o.admitted for o in ours + theirs)
    assert [o.decided for o in ours] == [o.decided for o in theirs]
    assert [o.order for o in ours] == [o.order for o in theirs]


@settings(max_examples=100, deadline=None)
@given(case=schedules(uniform=True, jitter=True, patience=True))
def test_a_deadline_refuses_exactly_the_requests_aiolimiter_would_time_out(
    case: tuple[RateLimit, list[Arrival]],
) -> None:
    """Ours refuses at the arrival instant; aiolimiter waits in vain until the deadline."""
    limit, arrivals = case
    ours = drive(Ours, limit, arrivals)
    theirs = drive(Theirs, limit, arrivals)
    assert [o.admitted for o in ours] == [o.admitted for o in theirs]
    for arrival, mine, their in zip(arrivals, ours, theirs, strict=True):
        if mine.admitted:
            assert mine.decided == their.decided
        else:
            assert mine.decided == arrival.at  # at once
            assert arrival.patience is not None
            assert their.decided == arrival.at + arrival.patience  # timed out
            assert mine.retry_after is not None
            assert mine.retry_after > arrival.patience


@st.composite
def probes(draw: st.DrawFn) -> tuple[RateLimit, list[Arrival], Arrival]:
    """A history of callers who take no wait, then one caller with some patience."""
    limit, history = draw(schedules(uniform=False, jitter=False, at_once=True))
    gap = draw(st.just(0.0) | st.integers(1, 8).map(lambda ticks: ticks * TICK) | _gaps(limit))
    refills = st.integers(0, int(8 * limit.burst)).map(lambda halves: halves * 0.5 / limit.rate)
    patience = draw(refills | _gaps(limit))  # often exactly the wait needed
    cost = draw(st.just(limit.burst) | _costs(limit))
    return limit, history, Arrival(history[-1].at + gap, cost, patience)


@settings(max_examples=100, deadline=None)
@given(case=probes())
@example(  # the wait ends exactly at the deadline
    case=(RateLimit(1, 1), [Arrival(0, 1, 0.0)], Arrival(0.25, 1, 0.75)),
)
def test_the_wait_a_refusal_names_is_aiolimiters_wait_for_the_same_request(
    case: tuple[RateLimit, list[Arrival], Arrival],
) -> None:
    """aiolimiter waits for the probe as long as it takes; ours, given the probe's deadline,
    admits it exactly as late when that is before the deadline, else refuses at once and
    names that same wait as its retry_after."""
    limit, history, probe = case
    assert probe.patience is not None
    ours = drive(Ours, limit, [*history, probe])
    theirs = drive(Theirs, limit, [*history, Arrival(probe.at, probe.cost, None)])
    assert [o.admitted for o in ours[:-1]] == [o.admitted for o in theirs[:-1]]
    mine, their = ours[-1], theirs[-1]
    needed = their.wait
    assert mine.admitted == (needed <= 0 or needed < probe.patience)
    if mine.admitted:
        assert mine.decided == their.decided
    else:
        assert mine.decided == probe.at
        assert mine.retry_after == needed


def test_a_wait_ending_exactly_at_the_deadline_is_refused_and_aiolimiter_is_not_earlier() -> None:
    limit = RateLimit(1, 1)
    arrivals = [Arrival(0, 1, 0.0), Arrival(0.25, 1, 0.75)]
    ours = drive(Ours, limit, arrivals)
    theirs = drive(Theirs, limit, arrivals)
    assert ours[1].admitted is False
    assert ours[1].retry_after == 0.75
    # aiolimiter times out at the deadline or admits no earlier than it
    assert theirs[1].decided >= 1.0


# --------------------------------------------------------------------------- mixed costs


@settings(max_examples=150, deadline=None)
@given(case=schedules(uniform=False, jitter=True))
def test_mixed_costs_differ_only_where_aiolimiter_serves_out_of_arrival_order(
    case: tuple[RateLimit, list[Arrival]],
) -> None:
    limit, arrivals = case
    ours = drive(Ours, limit, arrivals)
    theirs = drive(Theirs, limit, arrivals)
    assert all(o.admitted for o in ours + theirs)
    # ours: first come, first served
    assert [o.decided for o in ours] == sorted(o.decided for o in ours)
    # both: within the bucket's bound over every window
    assert_within_bound(limit, arrivals, ours)
    assert_within_bound(limit, arrivals, theirs)
    for index, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
        if mine.decided > their.decided:
            # aiolimiter let this request pass one that came before it
            assert any(t.decided > their.decided for t in theirs[:index]), index
        elif mine.decided < their.decided:
            # aiolimiter let a request that came after this one pass it
            assert any(t.order < their.order for t in theirs[index + 1 :]), index


@pytest.mark.parametrize(
    ("arrivals", "ours_at", "theirs_at"),
    [
        pytest.param(
            [Arrival(0, 2), Arrival(0.5, 2), Arrival(1.5, 1)],
            [0, 2, 3],
            [0, 3, 1.5],
            id="a-newcomer-with-room-passes-a-waiter",
        ),
        pytest.param(
            [Arrival(0, 2), Arrival(0.25, 2), Arrival(0.5, 1)],
            [0, 2, 3],
            [0, 3, 1],
            id="the-smallest-waiter-goes-first",
        ),
    ],
)
def test_where_the_queues_differ(
    arrivals: list[Arrival], ours_at: list[float], theirs_at: list[float]
) -> None:
    """Rate 1, burst 2. aiolimiter: a request of 1 admitted before an earlier one of 2 that
    waits, which then waits longer. Ours: in arrival order."""
    limit = RateLimit(1, 2)
    assert [o.decided for o in drive(Ours, limit, arrivals)] == ours_at
    assert [o.decided for o in drive(Theirs, limit, arrivals)] == theirs_at
