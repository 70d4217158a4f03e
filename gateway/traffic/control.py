"""Traffic control: every upstream request passes here, on one admission path.

Whatever sends a request upstream — a unary call, the opening of an event stream, a
watch poll, the cancel of an abandoned run — goes through :class:`TrafficControl`, in
this order::

    retries (budget, backoff with full jitter, inside the deadline)    traffic/retry.py
      └─ each attempt: admission, then the request
           circuit breakers: the route's and the upstream's              traffic/breaker.py
           upstream window (hold while the upstream says it is spent)   traffic/window.py
           rate limits: the global and the caller's bucket              traffic/limits.py
                        (in Redis for many processes)                   traffic/shared.py
           concurrency slot (bounded FIFO queue; unary requests)        traffic/concurrency.py
           the HTTP request                                             gateway/upstream/
           the answer: its status to the breaker, its rate-limit headers to the window;
           a status outside 2xx is raised as UpstreamHTTPError

Retries wrap admission because every attempt spends quota and a slot; the slot is held
only during the request, never during a backoff. Waiting for the window, the buckets or a
slot ends ``min_attempt_time`` before the deadline, so that no token is spent on a request
that could not be sent in time. Refusals are :class:`~gateway.errors.Refused` errors with
RetryInfo and QuotaFailure, answered by the server's error boundary; waits and refusals
are events on the call's span.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from typing import Final

from gateway.call import CallTrace, credential_digest
from gateway.clock import Clock, MonotonicClock
from gateway.errors import Refused, UpstreamAnswer, UpstreamHTTPError
from gateway.traffic.breaker import (
    Breakers,
    RouteTicket,
    affects_every_route,
    verdict_for_status,
    verdict_of,
)
from gateway.traffic.budget import RetryBudget
from gateway.traffic.concurrency import ConcurrencyLimiter
from gateway.traffic.limits import Limiter, LocalLimiter
from gateway.traffic.open_streams import OpenStreams
from gateway.traffic.retry import Retries, call_with_retries
from gateway.traffic.settings import TrafficSettings
from gateway.traffic.shared import RedisLimiter, shared_limiter
from gateway.traffic.window import UpstreamWindow, WindowTable, retry_delay
from gateway.upstream.request import UpstreamRequest
from gateway.upstream.streams import StreamClient, UpstreamStream
from gateway.upstream.unary import UnaryClient

WAIT_WORTH_NOTING: Final = 0.001
"""Seconds of waiting (window, buckets, slot) below which no span event is added."""

SLOW_ATTEMPT: Final = 1.0
"""An attempt with at least this long to run may count its timeout against the breaker;
a caller with a tiny deadline must not open the breaker for everyone."""


class Admission:
    """One attempt's permission: its breaker ticket, its window, its slot (if it holds one).

    The attempt reports exactly one outcome: :meth:`answered` or :meth:`failed`.
    """

    __slots__ = ("_concurrency", "_holding", "_ticket", "_timeouts_count", "_window")

    def __init__(
        self,
        ticket: RouteTicket,
        window: UpstreamWindow,
        concurrency: ConcurrencyLimiter | None,
        timeouts_count: bool,
    ) -> None:
        self._ticket = ticket
        self._window = window
        self._concurrency = concurrency
        self._holding = concurrency is not None
        self._timeouts_count = timeouts_count

    def answered(self, status: int, headers: Mapping[str, str]) -> None:
        """The upstream answered: the breaker hears the status, the window the headers."""
        self._release_slot()
        self._window.observe(status, headers)
        self._ticket.report(verdict_for_status(status))

    def failed(self, error: BaseException) -> None:
        """No answer: cancelled (no verdict), or failed (the breaker judges how)."""
        self._release_slot()
        if isinstance(error, Exception):
            self._ticket.report(
                verdict_of(error, timeouts_count=self._timeouts_count),
                everywhere=affects_every_route(error),
            )
        else:
            self._ticket.release()

    def _release_slot(self) -> None:
        if self._holding:
            self._holding = False
            assert self._concurrency is not None
            self._concurrency.release()


class TrafficControl:
    """The process's limiters, breaker, windows and retry budget, in front of its clients."""

    def __init__(
        self,
        settings: TrafficSettings,
        unary: UnaryClient,
        streams: StreamClient,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.unary = unary
        self.streams = streams
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
        self.breakers = Breakers(
            unary.host or "upstream",
            self.clock,
            failure_threshold=settings.breaker_failures,
            open_for=settings.breaker_open_seconds,
        )
        self.windows = WindowTable(lambda key: UpstreamWindow(self.clock, subject="upstream"))
        self.open_streams = OpenStreams(settings.caller_max_streams)
        self._limited = settings.global_limit is not None or settings.caller_limit is not None
        self._costs: dict[str, float] = {}  # per gRPC method, from the cost table
        self._admission_margin = settings.retry.min_attempt_time

    def deadline(self, seconds: float) -> float:
        """The absolute deadline, on this control's clock, ``seconds`` from now."""
        return self.clock.monotonic() + seconds

    async def send(
        self,
        request: UpstreamRequest,
        *,
        grpc_method: str,
        caller: str | None,
        deadline: float,
        trace: CallTrace | None = None,
        retries: bool = True,
        slot: bool = True,
    ) -> UpstreamAnswer:
        """A 2xx answer to ``request``, with retries under the policy, the budget and the
        deadline (``retries=False``: one attempt); UpstreamHTTPError for any other status.

        ``caller`` is the caller's key (:class:`gateway.call.CallerKeys`: its bucket; None
        or "": the global bucket only);
        ``slot=False`` spares requests that must not queue behind unary calls (polls).
        """
        if not retries:
            return await self._attempt(request, grpc_method, caller, deadline, trace, 1, slot)
        # The first attempt here: most calls need nothing else of the retry loop.
        self.budget.record_call()
        try:
            return await self._attempt(request, grpc_method, caller, deadline, trace, 1, slot)
        except Exception as error:  # CancelledError is no Exception: never retried
            first_failure = error
        return await call_with_retries(
            lambda number: self._attempt(
                request, grpc_method, caller, deadline, trace, number, slot
            ),
            method=request.method,
            has_idempotency_key=request.keyed,
            deadline=deadline,
            clock=self.clock,
            rng=self.rng,
            policy=self.settings.retry,
            budget=self.budget,
            first_failure=first_failure,
        )

    def retries(self, request: UpstreamRequest, deadline: float | None) -> Retries:
        """The retry rules for a call whose attempts are not one awaitable (a stream
        relayed until its first event): the policy, the budget, the deadline."""
        return Retries(
            method=request.method,
            has_idempotency_key=request.keyed,
            deadline=deadline,
            clock=self.clock,
            rng=self.rng,
            policy=self.settings.retry,
            budget=self.budget,
        )

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        request: UpstreamRequest,
        *,
        grpc_method: str,
        caller: str | None,
        deadline: float,
        timeout: float | None,
        idle_timeout: float,
        trace: CallTrace | None = None,
        attempt: int = 1,
    ) -> AsyncIterator[UpstreamStream]:
        """An event stream, admitted like any request (no slot: streams have their own pool).

        ``deadline`` bounds the admission; ``timeout`` the whole stream (None: no limit).
        A status outside 2xx is raised as UpstreamHTTPError before anything is yielded.
        """
        admission = await self._admit(request, grpc_method, caller, deadline, trace, False)
        opened = False
        try:
            async with self.streams.open(request, timeout, idle_timeout, trace, attempt) as stream:
                opened = True
                admission.answered(stream.status, stream.headers)
                if not 200 <= stream.status < 300:
                    answer = await stream.read()
                    raise UpstreamHTTPError(answer, request.route, retry_delay(answer.headers))
                yield stream
        except BaseException as error:
            if not opened:
                admission.failed(error)
            raise

    def start(self) -> None:
        """Begin the shared limiter's upkeep (membership, idle connections), if any."""
        if isinstance(self.limiter, RedisLimiter):
            self.limiter.start()

    async def close(self) -> None:
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.aclose()

    # ---------------------------------------------------------------- one attempt

    async def _attempt(
        self,
        request: UpstreamRequest,
        grpc_method: str,
        caller: str | None,
        deadline: float,
        trace: CallTrace | None,
        number: int,
        slot: bool,
    ) -> UpstreamAnswer:
        admission = await self._admit(request, grpc_method, caller, deadline, trace, slot)
        try:
            timeout = deadline - self.clock.monotonic()
            answer = await self.unary.send(request, timeout, trace, number)
        except BaseException as error:
            admission.failed(error)
            raise
        admission.answered(answer.status, answer.headers)
        if not 200 <= answer.status < 300:
            raise UpstreamHTTPError(answer, request.route, retry_delay(answer.headers))
        return answer

    async def _admit(
        self,
        request: UpstreamRequest,
        grpc_method: str,
        caller: str | None,
        deadline: float,
        trace: CallTrace | None,
        slot: bool,
    ) -> Admission:
        """Breaker, window, buckets and slot, each with a synchronous path for when nothing
        has to wait (this runs for every request)."""
        clock = self.clock
        started = clock.monotonic()
        admit_by = deadline - self._admission_margin
        try:
            ticket = self.breakers.ticket(request.route)
        except Refused as refused:
            self._refused(trace, refused)
            raise
        try:
            window = self.windows.get(credential_digest(request.credential))
            waited = False
            if not window.try_pass():
                await window.until_open(admit_by)
                waited = True
            if self._limited:
                await self.limiter.acquire(caller or "", self._cost(grpc_method), admit_by)
                waited = True
            concurrency = self.concurrency if slot else None
            if concurrency is not None and not concurrency.try_acquire():
                await concurrency.acquire(admit_by)
                waited = True
        except BaseException as error:
            ticket.release()
            if isinstance(error, Refused):
                self._refused(trace, error)
            raise
        if waited and trace is not None:
            self._waited(trace, started)
        return Admission(ticket, window, concurrency, deadline - started >= SLOW_ATTEMPT)

    def _cost(self, grpc_method: str) -> float:
        cost = self._costs.get(grpc_method)
        if cost is None:
            cost = self._costs[grpc_method] = self.settings.costs.cost(grpc_method)
        return cost

    @staticmethod
    def _refused(trace: CallTrace | None, refused: Refused) -> None:
        if trace is not None:
            trace.event(
                "gateway.traffic.refused",
                {"reason": refused.reason, "retry_after_s": refused.retry_after or 0.0},
            )

    def _waited(self, trace: CallTrace, started: float) -> None:
        waited = self.clock.monotonic() - started
        if waited >= WAIT_WORTH_NOTING:
            trace.event("gateway.traffic.waited", {"seconds": round(waited, 6)})
