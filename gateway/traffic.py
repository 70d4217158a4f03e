"""Traffic control in the call path: the building blocks, assembled once per gateway.

An upstream call (unary, or the opening of a stream) goes through, in this order::

    retries (budget, backoff with full jitter, inside the deadline)      gateway/retry.py
      └─ each attempt:
           circuit breaker (fail fast while open)                         gateway/breaker.py
           upstream window (hold while the upstream says it is spent)     gateway/upstream_window.py
           rate limits: global bucket + the caller's bucket               gateway/limits.py
           concurrency slot (bounded FIFO queue; unary calls only)        gateway/concurrency.py
           the HTTP exchange                                              gateway/upstream.py
           the answer's X-RateLimit-* / Retry-After update the window

Retries wrap the whole chain because every attempt spends quota and a slot; the slot is held
only during the exchange, never during a backoff. Refusals are :class:`Refused` errors with
RetryInfo and QuotaFailure, answered by the server's error boundary.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from gateway.breaker import CircuitBreaker, Verdict, verdict_of
from gateway.clock import Clock, MonotonicClock
from gateway.concurrency import ConcurrencyLimiter
from gateway.errors import Refused, UpstreamAnswer
from gateway.limits import CostTable, Limiter, LocalLimiter, RateLimit, caller_digest
from gateway.redis_limits import RedisLimiter, shared_limiter
from gateway.retry import RetryBudget, RetryPolicy, call_with_retries
from gateway.telemetry import TraceParent
from gateway.upstream_window import UpstreamWindow, WindowTable

T = TypeVar("T")

WAIT_WORTH_NOTING: Final = 0.001
"""Seconds of waiting (window, buckets, slot) below which no span event is added."""

SLOW_ATTEMPT: Final = 1.0
"""An attempt with at least this long to run may count its timeout against the breaker;
a caller with a tiny deadline must not open the breaker for everyone."""


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    global_limit: RateLimit | None = None
    caller_limit: RateLimit | None = None
    costs: CostTable = field(default_factory=CostTable)
    concurrency: int = 64
    queue: int = 128
    redis_url: str | None = None
    replicas: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_budget_ratio: float = 0.2
    retry_budget_floor: float = 10.0
    breaker_failures: int = 5
    breaker_open_seconds: float = 10.0


class TrafficControl:
    """The process's limiters, breaker, windows and retry budget."""

    def __init__(
        self,
        settings: TrafficSettings,
        upstream_host: str,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        self.limiter: Limiter = (
            shared_limiter(
                settings.redis_url,
                self.clock,
                settings.global_limit,
                settings.caller_limit,
                replicas=settings.replicas,
            )
            if settings.redis_url
            else LocalLimiter(self.clock, settings.global_limit, settings.caller_limit)
        )
        self.concurrency = ConcurrencyLimiter(settings.concurrency, settings.queue, self.clock)
        self.budget = RetryBudget(
            self.clock,
            ratio=settings.retry_budget_ratio,
            min_per_second=settings.retry_budget_floor,
        )
        self.breaker = CircuitBreaker(
            upstream_host or "upstream",
            self.clock,
            failure_threshold=settings.breaker_failures,
            open_for=settings.breaker_open_seconds,
        )
        self.windows = WindowTable(lambda key: UpstreamWindow(self.clock, subject="upstream"))
        self._limited = settings.global_limit is not None or settings.caller_limit is not None
        self._costs: dict[str, float] = {}  # per gRPC method, from the cost table
        self._admission_margin = settings.retry.min_attempt_time

    def deadline(self, seconds: float) -> float:
        return self.clock.monotonic() + seconds

    def time_left(self, deadline: float) -> float:
        return deadline - self.clock.monotonic()

    async def call(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        method: str,
        keyed: bool,
        deadline: float,
    ) -> T:
        """``attempt(n)`` with retries under the policy, the budget and the deadline."""
        return await call_with_retries(
            attempt,
            method=method,
            has_idempotency_key=keyed,
            deadline=deadline,
            clock=self.clock,
            rng=self.rng,
            policy=self.settings.retry,
            budget=self.budget,
        )

    async def exchange(
        self,
        send: Callable[[float], Awaitable[UpstreamAnswer]],
        check: Callable[[UpstreamAnswer], T],
        *,
        grpc_method: str,
        caller: str | None,
        upstream_credential: str | None,
        deadline: float,
        slot: bool = True,
        trace: TraceParent | None = None,
    ) -> T:
        """One attempt through breaker, window, limits and slot; ``send(timeout)`` does I/O.

        ``check`` turns the answer into the result or raises, before the breaker hears the
        verdict (so a 503 counts as a failure of the upstream). Time spent waiting for the
        window, the buckets or a slot is added to the call's span as an event.

        Written out step by step rather than with context managers: this runs for every
        call, and each stage has a synchronous fast path for when nothing has to wait.
        """
        clock = self.clock
        started = clock.monotonic()
        timeouts_count = deadline - started >= SLOW_ATTEMPT
        # Waiting must leave time for the request itself: a call admitted with nothing
        # left would spend a token (and a slot) and then time out before it is sent.
        admit_by = deadline - self._admission_margin
        concurrency = self.concurrency
        holding = False
        try:
            ticket = self.breaker.ticket()
        except Refused as refused:
            self._refused(trace, refused)
            raise
        try:
            window = self.windows.get(caller_digest(upstream_credential or ""))
            waited = False
            if not window.try_pass():
                await window.until_open(admit_by)
                waited = True
            if self._limited:
                await self.limiter.acquire(caller or "", self._cost(grpc_method), admit_by)
                waited = True
            if slot:
                if not concurrency.try_acquire():
                    await concurrency.acquire(admit_by)
                    waited = True
                holding = True
            if waited and trace is not None:
                self._waited(trace, started)
            answer = await send(deadline - clock.monotonic())
            if holding:
                holding = False
                concurrency.release()
            window.observe(answer.status, answer.headers)
            result = check(answer)
        except asyncio.CancelledError:
            ticket.release()
            raise
        except Refused as refused:
            ticket.report(Verdict.NONE)
            self._refused(trace, refused)
            raise
        except Exception as error:
            ticket.report(verdict_of(error, timeouts_count=timeouts_count))
            raise
        finally:
            if holding:
                concurrency.release()
        ticket.success()
        return result

    def _cost(self, grpc_method: str) -> float:
        cost = self._costs.get(grpc_method)
        if cost is None:
            cost = self._costs[grpc_method] = self.settings.costs.cost(grpc_method)
        return cost

    @staticmethod
    def _refused(trace: TraceParent | None, refused: Refused) -> None:
        if trace is not None:
            trace.event(
                "gateway.traffic.refused",
                {"reason": refused.reason, "retry_after_s": refused.retry_after or 0.0},
            )

    def _waited(self, trace: TraceParent | None, started: float) -> None:
        waited = self.clock.monotonic() - started
        if trace is not None and waited >= WAIT_WORTH_NOTING:
            trace.event("gateway.traffic.waited", {"seconds": round(waited, 6)})

    async def admit(
        self,
        *,
        grpc_method: str,
        caller: str | None,
        upstream_credential: str | None,
        deadline: float,
    ) -> None:
        """Admission for the opening of a stream: the upstream window and the rate limits.

        Streams have their own connection pool, take no unary slot and are never retried
        (a stream that has started cannot be repeated).
        """
        window = self.windows.get(caller_digest(upstream_credential or ""))
        admit_by = deadline - self._admission_margin
        if not window.try_pass():
            await window.until_open(admit_by)
        if self._limited:
            await self.limiter.acquire(caller or "", self._cost(grpc_method), admit_by)

    async def close(self) -> None:
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.aclose()
