"""Rate limits in front of the upstream: a global bucket and one bucket per caller.

A :class:`Limiter` admits a call (returns, perhaps after a wait) or refuses it at once with
:class:`~gateway.errors.Refused` (RESOURCE_EXHAUSTED, reason ``GATEWAY_RATE_LIMITED``,
RetryInfo = the wait that would be needed, QuotaFailure naming the bucket) when that wait
would outlast the caller's deadline. Callers are told apart by their caller key (a salted
digest made by :class:`gateway.call.CallerKeys`, never a credential): the bucket's name is
``caller:<the key's first 12 hex digits>``.

:class:`LocalLimiter` keeps the buckets in this process; :mod:`gateway.traffic.shared` keeps
them in Redis for many processes, with the same arithmetic.

The buckets are this module's GCRA rather than aiolimiter's: the reasons, the evidence
and when to revisit are in docs/decisions/001-own-rate-limit-buckets.md, and a
differential test holds these buckets to aiolimiter's admissions. Waiters are served first
come, first served.

A call passes its caller's bucket first and the global bucket second. While it waits for
its own bucket it holds nothing of the global one, so a caller over its own rate queues
behind itself only: its waiting calls cannot book the shared bucket ahead of other callers
(each caller adds at most its own rate to the global queue). A call refused or cancelled
at either step gives back what it reserved, as below.

Guarantee: for every bucket and every interval of length ``t``, the cost admitted is at most
``burst + rate * t``. Proof sketch: reservations move the TAT forward by ``cost / rate`` and a
reservation is admitted no earlier than ``TAT - burst / rate``. A cancelled waiter gives its
reservation back only while it is still the latest one, which restores the state as if it
had never come.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import grpc

from gateway.clock import Clock
from gateway.errors import FailureReason, Refused

GLOBAL_BUCKET: Final = "global"
OVERFLOW_BUCKET: Final = "caller:overflow"
"""The one bucket shared by callers for whom the table of caller buckets has no room."""
_EVICTION_SCAN: Final = 8
"""Least recently used buckets looked at for one that is full again, per newcomer."""
_EPSILON: Final = 1e-9
"""Seconds of floating-point noise below which a wait is no wait."""


class Limiter(Protocol):
    """Admits calls within a rate; the seam between the call path and the bucket storage."""

    async def acquire(self, key: str, cost: float, deadline: float | None) -> None:
        """Return once admitted, or raise Refused when the wait would pass ``deadline``.

        ``key`` is the caller's key (:class:`gateway.call.CallerKeys`) or "" for a call
        that passes only the global bucket. ``deadline`` is absolute, on the
        limiter's clock.
        """
        ...


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` cost units a second on average, ``burst`` of them at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number, not {self.rate!r}")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")

    def share(self, parts: int) -> RateLimit:
        """One of ``parts`` equal shares (a burst never below one call)."""
        if parts < 1:
            raise ValueError("parts must be at least 1")
        return RateLimit(self.rate / parts, max(self.burst / parts, 1.0))


def caller_subject(key: str) -> str:
    """The bucket name shown to callers and operators: ``caller:`` + 12 hex digits."""
    return f"caller:{key[:12]}"


# --------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class CostTable:
    """What each method costs against the buckets (1 unless configured otherwise).

    Keys are a bare method name (``RunAgent``), ``Service/Method`` or a fully qualified
    ``package.Service/Method``; the most specific match wins.
    """

    default: float = 1.0
    overrides: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, cost in {"default": self.default, **self.overrides}.items():
            if not (cost >= 0 and math.isfinite(cost)):
                raise ValueError(f"cost of {name} must be a non-negative number, not {cost!r}")

    def cost(self, method: str) -> float:
        """The cost of a call to ``method`` (a gRPC path such as ``/pkg.Service/Method``)."""
        path = method.lstrip("/")
        service, _, name = path.rpartition("/")
        short_service = service.rpartition(".")[2]
        for candidate in (path, f"{short_service}/{name}", name):
            found = self.overrides.get(candidate)
            if found is not None:
                return found
        return self.default


# --------------------------------------------------------------------------- GCRA


@dataclass(slots=True)
class Gcra:
    """One bucket's state: the theoretical arrival time (TAT) of the next call."""

    limit: RateLimit
    tat: float = -math.inf

    def admission_time(self, now: float, cost: float) -> float:
        """The earliest time a call of ``cost`` arriving ``now`` conforms."""
        increment = min(cost, self.limit.burst) / self.limit.rate
        tolerance = self.limit.burst / self.limit.rate
        at = max(self.tat, now) + increment - tolerance
        return at if at - now > _EPSILON else now

    def reserve(self, at: float, cost: float) -> Reservation:
        """Spend ``cost`` at time ``at`` (an admission time at least this bucket's own)."""
        previous = self.tat
        self.spend(at, cost)
        return Reservation(self, previous, self.tat)

    def spend(self, at: float, cost: float) -> None:
        """:meth:`reserve` for a call admitted at once, which is never given back."""
        self.tat = max(self.tat, at) + min(cost, self.limit.burst) / self.limit.rate

    def idle(self, now: float) -> bool:
        """Whether the bucket is full again (forgetting it loses nothing)."""
        return self.tat <= now


@dataclass(frozen=True, slots=True)
class Reservation:
    bucket: Gcra
    previous: float
    reserved: float

    def cancel(self) -> None:
        """Give the spend back if no later reservation was made on top of it."""
        if self.bucket.tat == self.reserved:
            self.bucket.tat = self.previous


def refusal(subject: str, wait: float, deadline_left: float) -> Refused:
    """The RESOURCE_EXHAUSTED status for a call whose wait passes its deadline."""
    return Refused(
        f"rate limit {subject}: the next admission is in {wait:.3f}s, "
        f"after the call's deadline ({max(deadline_left, 0.0):.3f}s left)",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        FailureReason.GATEWAY_RATE_LIMITED,
        retry_after=wait,
        quota_subject=subject,
        metadata={"bucket": subject},
    )


# --------------------------------------------------------------------------- local limiter


@dataclass
class LimiterStats:
    """Counters for metrics; read them, never reset them."""

    admitted: int = 0
    delayed: int = 0
    refused: int = 0
    overflowed: int = 0
    """Calls of callers who found the table full of buckets in debt, and shared the
    overflow bucket."""


class LocalLimiter:
    """Global and per-caller GCRA buckets in this process.

    ``None`` for a limit switches that bucket off; with both off :meth:`acquire` admits at
    once. At most ``max_callers`` caller buckets are kept. A newcomer to a full table takes
    the place of one of the least recently used buckets that is full again (forgetting a
    full bucket loses nothing); when those all still hold a debt, the newcomer shares one
    overflow bucket (``caller:overflow``) with every other caller left without a place.
    So the per-caller limit stays a bound however many identities a caller rotates
    through: it can hold at most the table's places and the overflow bucket, never a
    fresh bucket for a forgotten debt.
    """

    def __init__(
        self,
        clock: Clock,
        global_limit: RateLimit | None = None,
        caller_limit: RateLimit | None = None,
        *,
        max_callers: int = 10_000,
    ) -> None:
        if max_callers < 1:
            raise ValueError("max_callers must be at least 1")
        self.clock = clock
        self.global_limit = global_limit
        self.caller_limit = caller_limit
        self.max_callers = max_callers
        self.stats = LimiterStats()
        self._global = Gcra(global_limit) if global_limit is not None else None
        self._callers: OrderedDict[str, Gcra] = OrderedDict()
        self._overflow: Gcra | None = None

    def set_limits(self, global_limit: RateLimit | None, caller_limit: RateLimit | None) -> None:
        """New limits for the buckets (a share that changed); the buckets keep their state.
        A bucket switched on or off here starts full or is dropped."""
        self.global_limit, self.caller_limit = global_limit, caller_limit
        if global_limit is None:
            self._global = None
        elif self._global is None:
            self._global = Gcra(global_limit)
        else:
            self._global.limit = global_limit
        if caller_limit is None:
            self._callers.clear()
            self._overflow = None
            return
        for bucket in self._callers.values():
            bucket.limit = caller_limit
        if self._overflow is not None:
            self._overflow.limit = caller_limit

    @property
    def callers(self) -> int:
        """Caller buckets currently kept."""
        return len(self._callers)

    async def acquire(self, key: str, cost: float, deadline: float | None) -> None:
        own = self._caller_for(key)
        shared = self._global
        if own is None and shared is None:
            return
        now = self.clock.monotonic()
        own_at = now if own is None else own[1].admission_time(now, cost)
        shared_at = now if shared is None else shared.admission_time(now, cost)
        first_at = max(own_at, shared_at)
        if deadline is not None and first_at > now and first_at >= deadline:
            subject = GLOBAL_BUCKET if own is None or shared_at >= own_at else own[0]
            self.stats.refused += 1
            raise refusal(subject, first_at - now, deadline - now)
        held: list[Reservation] = []
        waited = False  # counted as admitted (and delayed) from the start of its first wait
        try:
            if own is not None:
                # The caller's own bucket first, holding nothing shared while it waits: a
                # caller over its own rate must never book the global bucket ahead of
                # callers who could go now.
                held.append(own[1].reserve(own_at, cost))
                if own_at > now:
                    waited = self._delaying()
                    await self.clock.sleep(own_at - now)
                    now = self.clock.monotonic()
            if shared is not None:
                at = shared.admission_time(now, cost)
                if at > now:
                    if deadline is not None and at >= deadline:
                        self.stats.refused += 1
                        raise refusal(GLOBAL_BUCKET, at - now, deadline - now)
                    held.append(shared.reserve(at, cost))
                    waited = waited or self._delaying()
                    await self.clock.sleep(at - now)
                else:
                    shared.spend(now, cost)
        except BaseException:
            for reservation in reversed(held):
                reservation.cancel()
            if waited:
                self.stats.admitted -= 1
                self.stats.delayed -= 1
            raise
        if not waited:
            self.stats.admitted += 1

    def _delaying(self) -> bool:
        self.stats.admitted += 1
        self.stats.delayed += 1
        return True

    def _caller_for(self, key: str) -> tuple[str, Gcra] | None:
        if not key or self.caller_limit is None:
            return None
        return self._caller_bucket(key)

    def _caller_bucket(self, digest: str) -> tuple[str, Gcra]:
        bucket = self._callers.get(digest)
        if bucket is not None:
            self._callers.move_to_end(digest)
            return caller_subject(digest), bucket
        assert self.caller_limit is not None
        if len(self._callers) >= self.max_callers and not self._forget_a_full_bucket():
            # Every kept bucket still remembers a debt: forgetting one would hand its
            # caller a full bucket on its return. Newcomers share one bucket instead.
            self.stats.overflowed += 1
            if self._overflow is None:
                self._overflow = Gcra(self.caller_limit)
            return OVERFLOW_BUCKET, self._overflow
        bucket = self._callers[digest] = Gcra(self.caller_limit)
        return caller_subject(digest), bucket

    def _forget_a_full_bucket(self) -> bool:
        """Forget one of the least recently used buckets that is full again (forgetting it
        loses nothing); False when the oldest ``_EVICTION_SCAN`` all still hold a debt."""
        now = self.clock.monotonic()
        for scanned, (digest, bucket) in enumerate(self._callers.items()):
            if scanned >= _EVICTION_SCAN:
                return False
            if bucket.idle(now):
                del self._callers[digest]
                return True
        return False
