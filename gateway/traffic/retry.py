"""Retries: which failures are safe to repeat, how long to wait, and how many to allow.

:func:`call_with_retries` runs attempts until one succeeds or a rule says stop:

* **safe to repeat** (:func:`is_retryable`): GET, HEAD, OPTIONS, PUT and DELETE on 502, 503,
  504 and on a connection lost after sending; POST and PATCH only with an Idempotency-Key;
  any method when the connection was refused before anything was sent, and on a 429 (the
  upstream did not act on it); never once a stream has started.
* **backoff**: exponential with full jitter, ``uniform(0, min(cap, base * 2**n))`` before
  retry ``n`` (0 for the first retry), and never less than a ``Retry-After`` the upstream
  sent (a Retry-After longer than ``max_retry_after`` ends the call instead).
* **deadline**: a retry happens only when, after its backoff, ``min_attempt_time`` is still
  left before the caller's deadline; otherwise the last failure is raised at once (with its
  RetryInfo, for a 429).
* **budget** (:class:`~gateway.traffic.budget.RetryBudget`): retries across all calls stay
  within a share of the calls plus a floor, so a failing upstream sees at most ``1 + ratio``
  times the load (plus the floor) rather than ``max_attempts`` times.

A POST or PATCH without an Idempotency-Key whose connection was lost after it was sent may
or may not have been carried out; it is raised as UNAVAILABLE with ErrorInfo reason
``OUTCOME_UNKNOWN`` (:func:`outcome_unknown`), so the caller knows to check before repeating.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from gateway.clock import Clock
from gateway.errors import (
    NOT_SENT,
    OUTCOME_UNCERTAIN,
    RETRYABLE_STATUSES,
    FailureReason,
    GatewayError,
    UpstreamHTTPError,
    UpstreamTransportError,
)
from gateway.traffic.budget import RetryBudget
from gateway.upstream.request import safe_to_repeat

T = TypeVar("T")


class FailureKind(enum.Enum):
    NOT_SENT = "not_sent"
    """The connection was refused: the upstream never saw the request."""
    OUTCOME_UNKNOWN = "outcome_unknown"
    """Sent, then the connection was lost: it may or may not have been carried out."""
    HTTP = "http"
    """The upstream answered with an error status."""
    FINAL = "final"
    """Anything else: a timeout (the deadline is spent), a refusal, a bug."""


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    status: int | None = None
    retry_after: float | None = None
    stream_started: bool = False


def classify_failure(error: BaseException) -> Failure:
    """What an attempt's exception means for retrying."""
    if isinstance(error, UpstreamHTTPError):
        return Failure(FailureKind.HTTP, error.answer.status, error.retry_after)
    if isinstance(error, UpstreamTransportError):
        if error.reason in NOT_SENT:
            return Failure(FailureKind.NOT_SENT)
        if error.reason in OUTCOME_UNCERTAIN:
            return Failure(FailureKind.OUTCOME_UNKNOWN)
    return Failure(FailureKind.FINAL)


def is_retryable(method: str, has_idempotency_key: bool, failure: Failure) -> bool:
    """Whether another attempt is safe after ``failure`` (time and budget aside)."""
    if failure.stream_started:
        return False
    if failure.kind is FailureKind.NOT_SENT:
        return True
    if failure.kind is FailureKind.HTTP:
        if failure.status == 429:
            return True
        return failure.status in RETRYABLE_STATUSES and safe_to_repeat(method, has_idempotency_key)
    if failure.kind is FailureKind.OUTCOME_UNKNOWN:
        return safe_to_repeat(method, has_idempotency_key)
    return False


def is_outcome_unknown(method: str, has_idempotency_key: bool, failure: Failure) -> bool:
    """Whether a final failure must be reported as OUTCOME_UNKNOWN."""
    return failure.kind is FailureKind.OUTCOME_UNKNOWN and not safe_to_repeat(
        method, has_idempotency_key
    )


def outcome_unknown(error: UpstreamTransportError, method: str) -> UpstreamTransportError:
    """The UNAVAILABLE / ``OUTCOME_UNKNOWN`` error that stands for ``error`` (chain with from)."""
    unknown = UpstreamTransportError(
        f"the connection was lost after the {method.upper()} request was sent and it carried "
        "no Idempotency-Key, so the upstream may or may not have carried it out; check before "
        "repeating it, or send an idempotency-key so the gateway can retry it safely",
        FailureReason.OUTCOME_UNKNOWN,
        error.domain,
        error.route,
    )
    unknown.context.update(error.context)
    unknown.context["transport_reason"] = error.reason
    return unknown


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts and how long between them."""

    max_attempts: int = 3
    base: float = 0.1
    cap: float = 2.0
    min_attempt_time: float = 0.05
    """Seconds that must be left before the deadline, after the backoff, for a retry."""
    max_retry_after: float = 30.0
    """A Retry-After longer than this ends the call instead of being waited for."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("base", "cap", "min_attempt_time", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(retry, 62))
        return rng.uniform(0.0, ceiling)


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Told to ``on_retry`` before each backoff: which attempt failed, how, the wait."""

    attempt: int
    delay: float
    failure: Failure
    error: BaseException


class Retries:
    """The retry rules applied to one call, attempt after attempt.

    For loops that cannot be a single awaitable (a stream relayed as it arrives):
    :meth:`delay_after` says how long to wait before the next attempt, or None when the
    failure is final; then :meth:`final` is what the caller gets. Creating it counts the
    call in the budget.
    """

    __slots__ = (
        "_budget_denied",
        "budget",
        "clock",
        "deadline",
        "keyed",
        "method",
        "policy",
        "rng",
    )

    def __init__(
        self,
        *,
        method: str,
        has_idempotency_key: bool,
        deadline: float | None,
        clock: Clock,
        rng: random.Random,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        counted: bool = False,
    ) -> None:
        """``counted``: the call is in the budget already (its first attempt ran first)."""
        self.method = method
        self.keyed = has_idempotency_key
        self.deadline = deadline
        self.clock = clock
        self.rng = rng
        self.policy = policy or RetryPolicy()
        self.budget = budget
        self._budget_denied = False
        if budget is not None and not counted:
            budget.record_call()

    def delay_after(self, number: int, failure: Failure) -> float | None:
        """The backoff before attempt ``number + 1`` after ``failure``; None: stop."""
        delay = _next_delay(number, failure, self.method, self.keyed, self.policy, self.rng)
        if delay is not None and self.deadline is not None:
            delay = _within(delay, self.deadline - self.clock.monotonic(), self.policy)
        if delay is not None and self.budget is not None and not self.budget.try_spend():
            self._budget_denied = True
            return None
        return delay

    def final(self, error: Exception, failure: Failure, attempts: int) -> Exception:
        """The exception the caller gets for the last failure (annotated, or
        OUTCOME_UNKNOWN); ``error`` itself when nothing changes."""
        return _final(error, failure, attempts, self._budget_denied, self.method, self.keyed)


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    method: str,
    has_idempotency_key: bool,
    deadline: float | None,
    clock: Clock,
    rng: random.Random,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    classify: Callable[[BaseException], Failure] = classify_failure,
    stream_started: Callable[[], bool] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    first_failure: Exception | None = None,
) -> T:
    """Run ``attempt(1)``, ``attempt(2)``, ... until one returns; raise the last failure.

    ``deadline`` is absolute on ``clock``. ``stream_started`` is asked after a failure:
    True means the attempt already delivered part of a stream, so nothing is repeated.
    A GatewayError raised after more than one attempt carries ``attempts`` in its context
    (ErrorInfo metadata), and ``retry: budget_exhausted`` when the budget said no.
    ``first_failure``: attempt 1 already ran, the call counted in the budget, and it
    raised this; the loop goes on from there (a caller that makes the first attempt
    itself spares a successful call the loop's set-up).
    """
    number = 1
    if first_failure is None:
        if budget is not None:
            budget.record_call()
        try:
            return await attempt(1)
        except Exception as exc:  # CancelledError is no Exception: never retried
            first_failure = exc
    retries = Retries(
        method=method,
        has_idempotency_key=has_idempotency_key,
        deadline=deadline,
        clock=clock,
        rng=rng,
        policy=policy,
        budget=budget,
        counted=True,
    )
    failed: Exception = first_failure
    while True:
        failure = classify(failed)
        if stream_started is not None and stream_started():
            failure = replace(failure, stream_started=True)
        delay = retries.delay_after(number, failure)
        if delay is None:
            final = retries.final(failed, failure, number)
            if final is failed:
                raise failed
            raise final from failed
        if on_retry is not None:
            on_retry(RetryEvent(number, delay, failure, failed))
        await clock.sleep(delay)
        number += 1
        try:
            return await attempt(number)
        except Exception as exc:  # CancelledError is no Exception: never retried
            failed = exc


def _next_delay(
    number: int,
    failure: Failure,
    method: str,
    has_idempotency_key: bool,
    policy: RetryPolicy,
    rng: random.Random,
) -> float | None:
    """The backoff before attempt ``number + 1``, or None when there is none to make."""
    if number >= policy.max_attempts or not is_retryable(method, has_idempotency_key, failure):
        return None
    delay = policy.backoff(number - 1, rng)
    if failure.retry_after is not None:
        if failure.retry_after > policy.max_retry_after:
            return None
        delay = max(delay, failure.retry_after)
    return delay


def _within(delay: float, time_left: float, policy: RetryPolicy) -> float | None:
    """``delay`` if an attempt still fits before the deadline after it, else None."""
    return delay if delay + policy.min_attempt_time <= time_left else None


def _final(
    error: Exception,
    failure: Failure,
    attempts: int,
    budget_denied: bool,
    method: str,
    has_idempotency_key: bool,
) -> Exception:
    """The exception the caller gets: the last failure, annotated, or OUTCOME_UNKNOWN."""
    if isinstance(error, UpstreamTransportError) and is_outcome_unknown(
        method, has_idempotency_key, failure
    ):
        error = outcome_unknown(error, method)
    if isinstance(error, GatewayError):
        if attempts > 1:
            error.context["attempts"] = str(attempts)
        if budget_denied:
            error.context["retry"] = "budget_exhausted"
    return error
