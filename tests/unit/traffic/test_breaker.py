"""Every transition of the circuit breaker, on a fake clock."""

from __future__ import annotations

import contextlib

import grpc
import pytest

from gateway.errors import (
    FailureReason,
    InvalidRequest,
    Refused,
    UpstreamAnswer,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamTransportError,
    UpstreamUnreadable,
)
from gateway.testing import FakeClock
from gateway.traffic.breaker import (
    Breakers,
    BreakerState,
    CircuitBreaker,
    Verdict,
    verdict_for_status,
    verdict_of,
)

R = FailureReason
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def answer(status: int) -> UpstreamAnswer:
    return UpstreamAnswer(status, {}, b"", "application/json", "api.example")


def make(**kwargs: float) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock(start=0.0)
    moves: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "api.example",
        clock,
        on_transition=lambda name, a, b: moves.append((a.value, b.value)),
        **kwargs,  # type: ignore[arg-type]
    )
    return breaker, clock, moves


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.ticket().failure()


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, moves = make(failure_threshold=3)
    fail(breaker, 2)
    breaker.ticket().success()  # the run is broken
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN
    assert moves == [("closed", "open")]


def test_open_fails_fast_with_retry_info_until_half_open() -> None:
    breaker, clock, _ = make(failure_threshold=1, open_for=10)
    fail(breaker)
    clock.now = 4.0
    with pytest.raises(Refused) as caught:
        breaker.ticket()
    error = caught.value
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.reason == "CIRCUIT_OPEN"
    assert error.retry_after == pytest.approx(6.0)
    assert error.error_metadata() == {"upstream": "api.example"}
    assert breaker.stats.fast_failures == 1
    clock.now = 10.0
    assert breaker.state is HALF_OPEN


def test_half_open_lets_a_bounded_number_of_probes_through() -> None:
    breaker, clock, _ = make(failure_threshold=1, open_for=5, half_open_probes=2)
    fail(breaker)
    clock.now = 5.0
    first, second = breaker.ticket(), breaker.ticket()
    assert first.probe
    assert second.probe
    with pytest.raises(Refused) as caught:
        breaker.ticket()
    assert caught.value.retry_after == pytest.approx(1.0)
    first.release()  # a probe without a verdict frees its place
    third = breaker.ticket()
    assert third.probe


def test_probe_success_closes() -> None:
    breaker, clock, moves = make(failure_threshold=1, open_for=5)
    fail(breaker)
    clock.now = 5.0
    breaker.ticket().success()
    assert breaker.state is CLOSED
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    fail(breaker)  # and counting starts afresh
    assert breaker.state is OPEN


def test_probe_failure_reopens_for_another_period() -> None:
    breaker, clock, moves = make(failure_threshold=1, open_for=5)
    fail(breaker)
    clock.now = 7.0
    breaker.ticket().failure()
    assert breaker.state is OPEN
    with pytest.raises(Refused) as caught:
        breaker.ticket()
    assert caught.value.retry_after == pytest.approx(5.0)
    assert moves[-2:] == [("open", "half_open"), ("half_open", "open")]
    assert breaker.stats.opened == 2


def test_success_threshold_needs_that_many_probes() -> None:
    breaker, clock, _ = make(failure_threshold=1, open_for=1, success_threshold=2)
    fail(breaker)
    clock.now = 1.0
    breaker.ticket().success()
    assert breaker.state is HALF_OPEN
    breaker.ticket().success()
    assert breaker.state is CLOSED


def test_verdicts_from_before_a_transition_do_not_count() -> None:
    breaker, clock, _ = make(failure_threshold=2, open_for=5)
    slow = breaker.ticket()  # started while closed
    fail(breaker, 2)
    assert breaker.state is OPEN
    clock.now = 5.0
    probe = breaker.ticket()
    slow.success()  # began before the breaker opened: no evidence of recovery
    assert breaker.state is HALF_OPEN
    probe.failure()
    assert breaker.state is OPEN


def test_only_the_first_verdict_of_a_ticket_counts() -> None:
    breaker, _, _ = make(failure_threshold=2)
    ticket = breaker.ticket()
    ticket.failure()
    ticket.failure()
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (UpstreamHTTPError(answer(503), "/r"), Verdict.FAILURE),
        (UpstreamHTTPError(answer(502), "/r"), Verdict.FAILURE),
        (UpstreamHTTPError(answer(504), "/r"), Verdict.FAILURE),
        (UpstreamHTTPError(answer(500), "/r"), Verdict.SUCCESS),
        (UpstreamHTTPError(answer(429), "/r"), Verdict.SUCCESS),
        (UpstreamHTTPError(answer(404), "/r"), Verdict.SUCCESS),
        (UpstreamUnreadable("html", answer(200), "/r"), Verdict.SUCCESS),
        (UpstreamTransportError("x", R.UPSTREAM_UNREACHABLE, "h", "/r"), Verdict.FAILURE),
        (UpstreamTransportError("x", R.UPSTREAM_CONNECTION_LOST, "h", "/r"), Verdict.FAILURE),
        (UpstreamTransportError("x", R.UPSTREAM_BODY_TOO_LARGE, "h", "/r"), Verdict.SUCCESS),
        (UpstreamTransportError("x", R.GATEWAY_CLOSED, "h", "/r"), Verdict.NONE),
        (UpstreamTimeout("late", "h", "/r"), Verdict.FAILURE),
        (Refused("no", grpc.StatusCode.RESOURCE_EXHAUSTED, R.GATEWAY_RATE_LIMITED), Verdict.NONE),
        (InvalidRequest("bad"), Verdict.NONE),
        (RuntimeError("bug"), Verdict.NONE),
    ],
    ids=[
        "503", "502", "504", "500", "429", "404", "unreadable", "refused-connect", "lost",
        "too-large", "closing", "timeout", "gateway-refusal", "invalid", "bug",
    ],
)  # fmt: skip
def test_verdict_of(error: BaseException, verdict: Verdict) -> None:
    assert verdict_of(error) is verdict


def test_timeouts_need_not_count() -> None:
    late = UpstreamTimeout("late", "h", "/r")
    assert verdict_of(late, timeouts_count=False) is Verdict.NONE


def test_a_ticket_reports_the_verdict_of_its_call() -> None:
    breaker, clock, _ = make(failure_threshold=2, open_for=1)
    unreachable = UpstreamTransportError("x", R.UPSTREAM_UNREACHABLE, "h", "/r")
    for _ in range(2):
        breaker.ticket().report(verdict_of(unreachable))
    assert breaker.state is OPEN
    clock.now = 1.0
    breaker.ticket().report(verdict_for_status(200))
    assert breaker.state is CLOSED


def test_a_released_probe_frees_its_place() -> None:
    breaker, clock, _ = make(failure_threshold=1, open_for=1)
    fail(breaker)
    clock.now = 1.0
    probe = breaker.ticket()
    with pytest.raises(Refused):  # the single probe place is taken
        breaker.ticket()
    probe.release()  # cancelled: no verdict
    assert breaker.state is HALF_OPEN
    assert breaker.ticket().probe  # the place is free again


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.SUCCESS), (404, Verdict.SUCCESS), (429, Verdict.SUCCESS),
     (500, Verdict.SUCCESS), (502, Verdict.FAILURE), (503, Verdict.FAILURE),
     (504, Verdict.FAILURE)],
)  # fmt: skip
def test_verdict_for_status(status: int, verdict: Verdict) -> None:
    assert verdict_for_status(status) is verdict


# --------------------------------------------------------------------------- per route


def _breakers(clock: FakeClock) -> Breakers:
    return Breakers("api", clock, failure_threshold=3, open_for=5.0)


def test_a_failing_route_trips_only_itself() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(20):
        for _ in range(5):  # a storm: five failed creates to each read
            with contextlib.suppress(Refused):
                breakers.ticket("POST /v1/agents").report(Verdict.FAILURE)
        breakers.ticket("GET /v1/agents").report(Verdict.SUCCESS)
    assert breakers.routes["POST /v1/agents"].state is OPEN
    assert breakers.routes["GET /v1/agents"].state is CLOSED
    assert breakers.upstream.state is CLOSED
    with pytest.raises(Refused) as caught:
        breakers.ticket("POST /v1/agents")
    assert caught.value.error_metadata()["route"] == "POST /v1/agents"


def test_every_route_failing_opens_the_upstream_for_all() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    routes = ["GET /v1/a", "GET /v1/b"]
    for number in range(4):
        breakers.ticket(routes[number % 2]).report(Verdict.FAILURE)
    assert breakers.upstream.state is OPEN
    with pytest.raises(Refused):
        breakers.ticket("GET /v1/never-failed")


def test_a_connection_that_cannot_be_made_counts_for_every_route() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.ticket("GET /v1/a").report(Verdict.FAILURE, everywhere=True)
    assert breakers.upstream.state is OPEN


def test_a_success_anywhere_ends_the_streak() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(10):
        with contextlib.suppress(Refused):
            breakers.ticket("GET /v1/a").report(Verdict.FAILURE)
        breakers.ticket("GET /v1/ok").report(Verdict.SUCCESS)
        with contextlib.suppress(Refused):
            breakers.ticket("GET /v1/b").report(Verdict.FAILURE)
        breakers.ticket("GET /v1/ok").report(Verdict.SUCCESS)
    assert breakers.upstream.state is CLOSED


@pytest.mark.asyncio
async def test_a_refusal_by_the_route_releases_the_upstreams_probe() -> None:
    clock = FakeClock(start=0.0)
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.ticket("GET /v1/b").report(Verdict.FAILURE, everywhere=True)
    await clock.advance(5.0)  # the upstream is half-open: one probe at a time
    breakers.ticket("GET /v1/a").release()
    for _ in range(3):  # meanwhile route a is found failing on its own
        breakers.routes["GET /v1/a"].ticket().failure()
    with pytest.raises(Refused):
        breakers.ticket("GET /v1/a")  # refused by route a: the upstream's probe is freed
    breakers.ticket("GET /v1/b").report(Verdict.SUCCESS)  # so b may probe, and closes it
    assert breakers.upstream.state is CLOSED
