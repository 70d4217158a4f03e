"""Circuit breakers: stop sending where the upstream is failing, probe, recover.

:class:`Breakers` keeps one :class:`CircuitBreaker` per route template and one for the
whole upstream, so that a failing endpoint trips only itself while the others are
served. The whole upstream's breaker hears the failures that say every route would fail
— a connection that could not be made — and the failures of a streak that spans two
routes or more with no success anywhere in between (every route failing); any success
ends the streak. A call passes both its route's breaker and the upstream's.

Each breaker:

    CLOSED ──(failure_threshold consecutive failures)──▶ OPEN
    OPEN ──(open_for seconds)──▶ HALF_OPEN
    HALF_OPEN ──(a probe fails)──▶ OPEN          (for another open_for seconds)
    HALF_OPEN ──(success_threshold probes succeed)──▶ CLOSED

While OPEN every call fails fast with :class:`~gateway.errors.Refused` (UNAVAILABLE, reason
``CIRCUIT_OPEN``, RetryInfo = the time until half-open). While HALF_OPEN at most
``half_open_probes`` calls go through at once; the others fail fast with a RetryInfo of
``min(1 s, open_for)``, the time a probe usually needs to decide.

Each call takes a :class:`Ticket` and reports one verdict: ``success`` (the upstream
answered, whatever the status, except the :data:`~gateway.errors.RETRYABLE_STATUSES`),
``failure`` (no answer, a timeout, or one of those statuses) or ``release`` (no verdict:
cancelled, refused by the gateway itself). A verdict counts only in the state its call
started in, so a slow call that began before the breaker opened cannot close it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from gateway.clock import Clock
from gateway.errors import (
    ANSWERED,
    NOT_SENT,
    RETRYABLE_STATUSES,
    FailureReason,
    GatewayError,
    Refused,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamTransportError,
    UpstreamUnreadable,
)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"


def verdict_for_status(status: int) -> Verdict:
    """What an answer's HTTP status says about the upstream's health."""
    return Verdict.FAILURE if status in RETRYABLE_STATUSES else Verdict.SUCCESS


def verdict_of(error: BaseException, *, timeouts_count: bool = True) -> Verdict:
    """What an exception says about the upstream's health.

    ``timeouts_count=False`` suits attempts whose timeout was short because the caller's
    deadline was: a caller in a hurry must not open the breaker for everyone.
    """
    if isinstance(error, UpstreamHTTPError):
        return verdict_for_status(error.answer.status)
    if isinstance(error, UpstreamUnreadable):
        return Verdict.SUCCESS
    if isinstance(error, UpstreamTransportError):
        if error.reason is FailureReason.GATEWAY_CLOSED:
            return Verdict.NONE
        return Verdict.SUCCESS if error.reason in ANSWERED else Verdict.FAILURE
    if isinstance(error, UpstreamTimeout):
        return Verdict.FAILURE if timeouts_count else Verdict.NONE
    return Verdict.NONE


def affects_every_route(error: BaseException) -> bool:
    """Whether a failure says the whole upstream is down (no connection could be made),
    rather than one route."""
    return isinstance(error, UpstreamTransportError) and error.reason in NOT_SENT


@dataclass
class BreakerStats:
    opened: int = 0
    fast_failures: int = 0


Transition = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """The breaker of one upstream (``name`` appears in statuses and transitions)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        route: str | None = None,
        failure_threshold: int = 5,
        open_for: float = 10.0,
        half_open_probes: int = 1,
        success_threshold: int = 1,
        on_transition: Transition | None = None,
    ) -> None:
        if failure_threshold < 1 or half_open_probes < 1 or success_threshold < 1:
            raise ValueError("thresholds and probes must be at least 1")
        if not open_for > 0:
            raise ValueError("open_for must be greater than 0")
        self.name = name
        self.route = route
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.open_for = open_for
        self.half_open_probes = half_open_probes
        self.success_threshold = success_threshold
        self.on_transition = on_transition
        self.stats = BreakerStats()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._successes = 0
        self._probes = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        self._tick()
        return self._state

    def ticket(self) -> Ticket:
        """Permission for one call, or Refused (UNAVAILABLE, CIRCUIT_OPEN) at once."""
        self._tick()
        if self._state is BreakerState.OPEN:
            left = self._opened_at + self.open_for - self.clock.monotonic()
            raise self._refusal(f"retry in {left:.3f}s", left)
        probe = self._state is BreakerState.HALF_OPEN
        if probe:
            if self._probes >= self.half_open_probes:
                raise self._refusal("a probe is under way", min(1.0, self.open_for))
            self._probes += 1
        return Ticket(self, self._generation, probe)

    # ---------------------------------------------------------------- verdicts

    def _verdict(self, ticket: Ticket, verdict: Verdict) -> None:
        current = ticket.generation == self._generation
        if ticket.probe and current:
            self._probes -= 1
        if not current or verdict is Verdict.NONE:
            return
        if verdict is Verdict.FAILURE:
            self._on_failure()
        else:
            self._on_success()

    def _on_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.OPEN)
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._move(BreakerState.OPEN)

    def _on_success(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._move(BreakerState.CLOSED)
            return
        self._failures = 0

    # ---------------------------------------------------------------- states

    def _tick(self) -> None:
        due = self._opened_at + self.open_for
        if self._state is BreakerState.OPEN and self.clock.monotonic() >= due:
            self._move(BreakerState.HALF_OPEN)

    def _move(self, state: BreakerState) -> None:
        before, self._state = self._state, state
        self._generation += 1
        self._failures = self._successes = self._probes = 0
        if state is BreakerState.OPEN:
            self._opened_at = self.clock.monotonic()
            self.stats.opened += 1
        if self.on_transition is not None:
            self.on_transition(self.name, before, state)

    def _refusal(self, detail: str, retry_after: float) -> GatewayError:
        self.stats.fast_failures += 1
        where = f"the upstream {self.name}"
        metadata = {"upstream": self.name}
        if self.route is not None:
            where = f"{self.route} on the upstream {self.name}"
            metadata["route"] = self.route
        return Refused(
            f"{where} is failing; the gateway stopped sending to it (circuit open: {detail})",
            grpc.StatusCode.UNAVAILABLE,
            FailureReason.CIRCUIT_OPEN,
            retry_after=max(retry_after, 0.0),
            metadata=metadata,
        )


class Ticket:
    """One call's permission; the first verdict reported counts, later ones are ignored."""

    __slots__ = ("_breaker", "_done", "generation", "probe")

    def __init__(self, breaker: CircuitBreaker, generation: int, probe: bool) -> None:
        self._breaker = breaker
        self.generation = generation
        self.probe = probe
        self._done = False

    def success(self) -> None:
        self.report(Verdict.SUCCESS)

    def failure(self) -> None:
        self.report(Verdict.FAILURE)

    def release(self) -> None:
        """No verdict (cancelled, or stopped by the gateway before the upstream answered)."""
        self.report(Verdict.NONE)

    def report(self, verdict: Verdict) -> None:
        if self._done:
            return
        self._done = True
        self._breaker._verdict(self, verdict)


class Breakers:
    """The whole upstream's breaker and one breaker per route template."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        open_for: float = 10.0,
        on_transition: Transition | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.open_for = open_for
        self.on_transition = on_transition
        self.upstream = CircuitBreaker(
            name,
            clock,
            failure_threshold=failure_threshold,
            open_for=open_for,
            on_transition=on_transition,
        )
        self.routes: dict[str, CircuitBreaker] = {}
        self._streak: set[str] = set()

    def ticket(self, route: str) -> RouteTicket:
        """Permission for one call on ``route``, or Refused at once when the upstream's
        breaker or the route's is open."""
        whole = self.upstream.ticket()
        breaker = self.routes.get(route)
        if breaker is None:
            breaker = self.routes[route] = CircuitBreaker(
                self.name,
                self.clock,
                route=route,
                failure_threshold=self.failure_threshold,
                open_for=self.open_for,
                on_transition=self.on_transition,
            )
        try:
            own = breaker.ticket()
        except Refused:
            whole.release()
            raise
        return RouteTicket(self, route, whole, own)

    def _report(self, ticket: RouteTicket, verdict: Verdict, everywhere: bool) -> None:
        ticket.own.report(verdict)
        if verdict is Verdict.SUCCESS:
            self._streak.clear()
            ticket.whole.report(Verdict.SUCCESS)
        elif verdict is Verdict.FAILURE:
            self._streak.add(ticket.route)
            spread = everywhere or len(self._streak) >= 2
            ticket.whole.report(Verdict.FAILURE if spread else Verdict.NONE)
        else:
            ticket.whole.report(Verdict.NONE)


class RouteTicket:
    """One call's permission from its route's breaker and the upstream's."""

    __slots__ = ("_breakers", "own", "route", "whole")

    def __init__(self, breakers: Breakers, route: str, whole: Ticket, own: Ticket) -> None:
        self._breakers = breakers
        self.route = route
        self.whole = whole
        self.own = own

    def report(self, verdict: Verdict, *, everywhere: bool = False) -> None:
        """The call's verdict; ``everywhere``: a failure that says every route would fail."""
        self._breakers._report(self, verdict, everywhere)

    def release(self) -> None:
        self.report(Verdict.NONE)
