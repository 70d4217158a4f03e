"""Retry rules, backoff, deadline and budget, on a fake clock with a seeded RNG."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    FailureReason,
    InvalidRequest,
    Refused,
    UpstreamAnswer,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamTransportError,
)
from gateway.status import to_status
from gateway.testing import FakeClock
from gateway.traffic.budget import RetryBudget
from gateway.traffic.retry import (
    Failure,
    FailureKind,
    RetryEvent,
    RetryPolicy,
    call_with_retries,
    classify_failure,
    is_retryable,
)
from gateway.traffic.window import retry_delay

ROUTE = "/v1/agents"


def http_error(status: int, headers: dict[str, str] | None = None) -> UpstreamHTTPError:
    answer = UpstreamAnswer(status, headers or {}, b"", "application/json", "api.example")
    return UpstreamHTTPError(answer, ROUTE, retry_delay(answer.headers))


def transport(reason: str) -> UpstreamTransportError:
    return UpstreamTransportError("boom", FailureReason(reason), "api.example", ROUTE)


def status_of(error: BaseException) -> status_pb2.Status:
    raw = dict(to_status(error, "req-1").trailing_metadata)["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    return status_pb2.Status.FromString(raw)


REFUSED_CONNECT = Failure(FailureKind.NOT_SENT)
LOST = Failure(FailureKind.OUTCOME_UNKNOWN)


def http(status: int, retry_after: float | None = None) -> Failure:
    return Failure(FailureKind.HTTP, status, retry_after)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("method", "keyed", "failure", "expected"),
    [
        ("GET", False, http(503), True),
        ("PUT", False, http(502), True),
        ("DELETE", False, http(504), True),
        ("GET", False, LOST, True),
        ("GET", False, http(500), False),
        ("GET", False, http(404), False),
        ("POST", False, http(503), False),
        ("PATCH", False, LOST, False),
        ("POST", True, http(503), True),
        ("PATCH", True, LOST, True),
        ("POST", False, REFUSED_CONNECT, True),
        ("PATCH", False, REFUSED_CONNECT, True),
        ("POST", False, http(429, 2.0), True),
        ("GET", False, Failure(FailureKind.HTTP, 503, stream_started=True), False),
        ("GET", False, Failure(FailureKind.NOT_SENT, stream_started=True), False),
        ("GET", False, Failure(FailureKind.FINAL), False),
    ],
    ids=[
        "get-503", "put-502", "delete-504", "get-lost", "get-500", "get-404",
        "post-503-no-key", "patch-lost-no-key", "post-503-key", "patch-lost-key",
        "post-connect-refused", "patch-connect-refused", "post-429", "stream-started",
        "stream-started-connect", "final",
    ],
)  # fmt: skip
def test_is_retryable(method: str, keyed: bool, failure: Failure, expected: bool) -> None:
    assert is_retryable(method, keyed, failure) is expected


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (transport("UPSTREAM_UNREACHABLE"), FailureKind.NOT_SENT),
        (transport("UPSTREAM_CONNECTION_LOST"), FailureKind.OUTCOME_UNKNOWN),
        (transport("UPSTREAM_BODY_TRUNCATED"), FailureKind.OUTCOME_UNKNOWN),
        (transport("UPSTREAM_PROTOCOL_ERROR"), FailureKind.OUTCOME_UNKNOWN),
        (transport("UPSTREAM_BODY_TOO_LARGE"), FailureKind.FINAL),
        (transport("GATEWAY_CLOSED"), FailureKind.FINAL),
        (UpstreamTimeout("late", "api.example", ROUTE), FailureKind.FINAL),
        (Refused("no", grpc.StatusCode.UNAVAILABLE, FailureReason.CIRCUIT_OPEN), FailureKind.FINAL),
        (InvalidRequest("bad"), FailureKind.FINAL),
        (RuntimeError("bug"), FailureKind.FINAL),
    ],
    ids=lambda v: v.name if isinstance(v, FailureKind) else type(v).__name__,
)
def test_classify_failure(error: BaseException, kind: FailureKind) -> None:
    assert classify_failure(error).kind is kind


def test_classify_http_reads_retry_after() -> None:
    assert classify_failure(http_error(429, {"retry-after": "2"})) == http(429, 2.0)
    assert classify_failure(http_error(503)) == http(503, None)


def test_backoff_is_full_jitter_under_the_capped_exponential() -> None:
    policy = RetryPolicy(max_attempts=10, base=0.1, cap=2.0)
    rng = random.Random(42)
    for retry, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]):
        samples = [policy.backoff(retry, rng) for _ in range(2000)]
        assert min(samples) >= 0
        assert max(samples) <= ceiling
        assert sum(samples) / len(samples) == pytest.approx(ceiling / 2, rel=0.05)
    assert policy.backoff(10_000, rng) <= 2.0  # no overflow far out
    assert RetryPolicy().backoff(1, random.Random(1)) == RetryPolicy().backoff(1, random.Random(1))


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base": -1}, {"cap": float("inf")}], ids=str
)
def test_policy_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the loop


def script(*outcomes: BaseException | str) -> tuple[Callable[[int], Awaitable[str]], list[int]]:
    """An attempt function that raises or returns the outcomes in order."""
    seen: list[int] = []

    async def attempt(number: int) -> str:
        seen.append(number)
        outcome = outcomes[number - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, seen


async def run(
    *outcomes: BaseException | str,
    method: str = "GET",
    keyed: bool = False,
    deadline: float | None = None,
    clock: FakeClock | None = None,
    budget: RetryBudget | None = None,
    events: list[RetryEvent] | None = None,
) -> tuple[str, list[int], FakeClock]:
    clock = clock or FakeClock(start=0.0, auto_advance=True)
    attempt, seen = script(*outcomes)
    result = await call_with_retries(
        attempt,
        method=method,
        has_idempotency_key=keyed,
        deadline=deadline,
        clock=clock,
        rng=random.Random(3),
        budget=budget,
        on_retry=None if events is None else events.append,
    )
    return result, seen, clock


@pytest.mark.asyncio
async def test_succeeds_after_two_failures_passing_attempt_numbers() -> None:
    events: list[RetryEvent] = []
    result, seen, clock = await run(http_error(503), transport("UPSTREAM_CONNECTION_LOST"), "ok",
                                    events=events)  # fmt: skip
    assert (result, seen) == ("ok", [1, 2, 3])
    assert [e.attempt for e in events] == [1, 2]
    assert 0 <= clock.slept[0] <= 0.1
    assert 0 <= clock.slept[1] <= 0.2


@pytest.mark.asyncio
async def test_gives_up_after_max_attempts_with_the_last_failure() -> None:
    last = http_error(503)
    with pytest.raises(UpstreamHTTPError) as caught:
        await run(http_error(503), http_error(502), last)
    assert caught.value is last
    assert caught.value.context["attempts"] == "3"


@pytest.mark.asyncio
async def test_post_without_key_is_not_retried_on_503_but_with_key_it_is() -> None:
    with pytest.raises(UpstreamHTTPError):
        await run(http_error(503), "ok", method="POST")
    result, seen, _ = await run(http_error(503), "ok", method="POST", keyed=True)
    assert (result, seen) == ("ok", [1, 2])


@pytest.mark.asyncio
async def test_any_method_is_retried_when_the_connection_was_refused() -> None:
    result, seen, _ = await run(transport("UPSTREAM_UNREACHABLE"), "ok", method="POST")
    assert (result, seen) == ("ok", [1, 2])


@pytest.mark.asyncio
async def test_post_without_key_lost_after_sending_is_outcome_unknown() -> None:
    lost = transport("UPSTREAM_CONNECTION_LOST")
    with pytest.raises(UpstreamTransportError) as caught:
        await run(lost, "never", method="POST")
    error = caught.value
    assert error.reason == "OUTCOME_UNKNOWN"
    assert error.__cause__ is lost
    assert to_status(error, "req-1").code is grpc.StatusCode.UNAVAILABLE
    status = status_of(error)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "OUTCOME_UNKNOWN"
    assert info.metadata["transport_reason"] == "UPSTREAM_CONNECTION_LOST"


@pytest.mark.asyncio
async def test_keyed_post_lost_after_sending_is_retried_and_keeps_the_transport_reason() -> None:
    with pytest.raises(UpstreamTransportError) as caught:
        await run(*[transport("UPSTREAM_BODY_TRUNCATED")] * 3, method="POST", keyed=True)
    assert caught.value.reason == "UPSTREAM_BODY_TRUNCATED"
    assert caught.value.context["attempts"] == "3"


@pytest.mark.asyncio
async def test_429_waits_its_retry_after() -> None:
    result, _, clock = await run(http_error(429, {"retry-after": "2"}), "ok", method="POST",
                                 deadline=10.0)  # fmt: skip
    assert result == "ok"
    assert clock.slept == [2.0]


@pytest.mark.asyncio
async def test_429_past_the_deadline_fails_at_once_with_its_retry_info() -> None:
    limited = http_error(429, {"retry-after": "2"})
    with pytest.raises(UpstreamHTTPError) as caught:
        await run(limited, "never", deadline=1.0)
    assert caught.value is limited
    status = status_of(limited)
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds >= 2


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_policy_maximum_ends_the_call() -> None:
    with pytest.raises(UpstreamHTTPError):
        await run(http_error(503, {"retry-after": "3600"}), "never")


@pytest.mark.asyncio
async def test_no_retry_without_time_for_the_attempt() -> None:
    clock = FakeClock(start=0.0, auto_advance=True)
    with pytest.raises(UpstreamHTTPError):  # first backoff is up to 0.1 s; 0.05 s left
        await run(http_error(503), "never", deadline=0.05, clock=clock)
    assert clock.slept == []


@settings(max_examples=60, deadline=None)
@given(deadline=st.floats(0, 3), seed=st.integers(0, 1000))
def test_never_sleeps_past_the_deadline(deadline: float, seed: int) -> None:
    async def scenario() -> float:
        clock = FakeClock(start=0.0, auto_advance=True)

        async def attempt(number: int) -> str:
            clock.now += 0.01  # each attempt takes 10 ms
            raise http_error(503)

        with pytest.raises(UpstreamHTTPError):
            await call_with_retries(
                attempt, method="GET", has_idempotency_key=False, deadline=deadline,
                clock=clock, rng=random.Random(seed), policy=RetryPolicy(max_attempts=20),
            )  # fmt: skip
        return clock.now - 0.01  # when the last attempt started

    last_start = asyncio.run(scenario())
    assert last_start <= max(deadline - 0.05, 0.0) + 1e-9


@pytest.mark.asyncio
async def test_no_retry_once_the_stream_has_started() -> None:
    attempt, seen = script(http_error(503), "ok")
    with pytest.raises(UpstreamHTTPError):
        await call_with_retries(
            attempt,
            method="GET", has_idempotency_key=False, deadline=None,
            clock=FakeClock(auto_advance=True), rng=random.Random(1),
            stream_started=lambda: True,
        )  # fmt: skip
    assert seen == [1]


@pytest.mark.asyncio
async def test_cancellation_is_never_retried() -> None:
    with pytest.raises(asyncio.CancelledError):
        await run(asyncio.CancelledError(), "never")


# --------------------------------------------------------------------------- the budget


def test_budget_floor_alone_allows_min_per_second_times_window() -> None:
    clock = FakeClock(start=0.0)
    budget = RetryBudget(clock, ratio=0.2, min_per_second=10, window=10)
    assert sum(budget.try_spend() for _ in range(150)) == 100
    assert budget.denied == 50


def test_budget_adds_the_ratio_of_calls() -> None:
    clock = FakeClock(start=0.0)
    budget = RetryBudget(clock, ratio=0.2, min_per_second=10, window=10)
    for _ in range(1000):
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(1000)) == 300  # 0.2 * 1000 + 10 * 10


def test_budget_forgets_what_left_the_window() -> None:
    clock = FakeClock(start=0.0)
    budget = RetryBudget(clock, ratio=0.5, min_per_second=0, window=10, slots=10)
    for _ in range(100):
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(40)) == 40
    clock.now = 9.5  # still the same 10 one-second slots
    assert sum(budget.try_spend() for _ in range(40)) == 10
    clock.now = 10.0  # the first slot (calls and retries) has left the window
    assert not budget.try_spend()
    for _ in range(30):  # 0.5 * 30 = 15 allowed, 10 retries of the 9th second still count
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(10)) == 5
    clock.now = 1000.0  # long quiet: everything forgotten
    assert not budget.try_spend()


def test_budget_validates() -> None:
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(FakeClock(), ratio=-1)


@pytest.mark.asyncio
async def test_budget_exhaustion_stops_retries_and_says_so() -> None:
    clock = FakeClock(start=0.0, auto_advance=True)
    budget = RetryBudget(clock, ratio=0, min_per_second=0)
    with pytest.raises(UpstreamHTTPError) as caught:
        await run(http_error(503), "never", clock=clock, budget=budget)
    assert caught.value.context == {"retry": "budget_exhausted"}
    assert budget.denied == 1


async def failing_calls(calls: int, per_second: float) -> tuple[float, RetryBudget]:
    """Share of GET calls that fail when 30% of upstream answers are 503.

    Calls arrive ``per_second`` on the budget's clock, as if concurrent; each call's own
    backoff sleeps run on a separate auto-advancing clock.
    """
    arrivals = FakeClock(start=0.0)
    budget = RetryBudget(arrivals)  # 20% of calls + 10 a second, over 10 s
    sleeps = FakeClock(start=0.0, auto_advance=True)
    upstream = random.Random(11)
    jitter = random.Random(12)
    failed = 0

    async def attempt(number: int) -> str:
        if upstream.random() < 0.3:
            raise http_error(503)
        return "ok"

    for _ in range(calls):
        arrivals.now += 1 / per_second
        try:
            await call_with_retries(attempt, method="GET", has_idempotency_key=False,
                                    deadline=sleeps.now + 5, clock=sleeps, rng=jitter,
                                    budget=budget)  # fmt: skip
        except UpstreamHTTPError:
            failed += 1
    return failed / calls, budget


@pytest.mark.asyncio
async def test_failed_calls_match_the_retry_arithmetic_within_the_budget_floor() -> None:
    # 20 calls/s need ~0.39 * 20 = 7.8 retries/s: within 0.2 * 20 + 10 = 14/s
    share, budget = await failing_calls(8000, per_second=20)
    assert share == pytest.approx(0.3**3, abs=0.008)
    assert budget.denied == 0


@pytest.mark.asyncio
async def test_budget_caps_retry_load_when_calls_outnumber_the_floor() -> None:
    # 1000 calls/s would need ~390 retries/s; the budget allows 0.2 * 1000 + 10 = 210/s
    share, budget = await failing_calls(20_000, per_second=1000)
    assert budget.denied > 0
    assert budget.spent <= 0.2 * 20_000 + 10 * 20 + 10 * 10  # ratio + floor + one window
    assert budget.spent / 20_000 == pytest.approx(0.21, abs=0.01)
    assert share > 0.3**3 * 2
