"""The traffic-control series, read from the limiters' own counters when scraped.

Nothing here runs per call: the limiters, the queue, the breaker and the retry budget
count in plain attributes, and a scrape of ``/metrics`` reads them.

==========================================  =========  ====================================
``gateway_limiter_calls_total``             counter    outcome (admitted, delayed, refused)
``gateway_upstream_slots_in_use``           gauge
``gateway_upstream_queue_depth``            gauge
``gateway_upstream_queue_refusals_total``   counter    reason (full, timeout)
``gateway_circuit_breaker_state``           gauge      state (1 for the current one)
``gateway_circuit_breaker_opened_total``    counter
``gateway_circuit_breaker_fast_failures_total`` counter
``gateway_retry_budget_denied_total``       counter
``gateway_shared_limiter_redis_errors_total`` counter  (with GATEWAY_REDIS_URL)
==========================================  =========  ====================================
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.traffic.breaker import Breakers, BreakerState
from gateway.traffic.concurrency import ConcurrencyLimiter
from gateway.traffic.control import TrafficControl
from gateway.traffic.limits import Limiter, LocalLimiter
from gateway.traffic.shared import RedisLimiter


class TrafficCollector(Collector):
    """Limiter, queue, breaker and retry-budget series, read from their counters on scrape."""

    def __init__(self, control: TrafficControl) -> None:
        self.control = control

    def collect(self) -> Iterable[Metric]:
        control = self.control
        yield from _limiter_series(control.limiter)
        yield from _queue_series(control.concurrency)
        yield from _breaker_series(control.breakers)
        yield CounterMetricFamily(
            "gateway_retry_budget_denied",
            "Retries the retry budget did not allow.",
            value=control.budget.denied,
        )


def _limiter_series(limiter: Limiter) -> Iterable[Metric]:
    calls = CounterMetricFamily(
        "gateway_limiter_calls",
        "Calls through the rate limits: admitted at once, admitted after a wait "
        "(delayed), refused because the wait would outlast the deadline. With Redis, "
        "admissions decided by Redis count as admitted.",
        labels=("outcome",),
    )
    admitted = delayed = refused = 0
    local = limiter
    if isinstance(limiter, RedisLimiter):
        shared = limiter.stats
        admitted = shared.admitted
        refused = shared.refused
        local = limiter.fallback
    if isinstance(local, LocalLimiter):
        admitted += local.stats.admitted - local.stats.delayed
        delayed = local.stats.delayed
        refused += local.stats.refused
    calls.add_metric(("admitted",), admitted)
    calls.add_metric(("delayed",), delayed)
    calls.add_metric(("refused",), refused)
    yield calls
    if isinstance(local, LocalLimiter) and local.caller_limit is not None:
        yield GaugeMetricFamily(
            "gateway_caller_buckets",
            "Caller buckets kept in this process (at most 10,000).",
            value=local.callers,
        )
        yield CounterMetricFamily(
            "gateway_caller_bucket_overflow",
            "Calls of callers for whom no caller bucket had room (every kept bucket still "
            "in debt), charged to the one shared overflow bucket.",
            value=local.stats.overflowed,
        )
    if isinstance(limiter, RedisLimiter):
        yield CounterMetricFamily(
            "gateway_shared_limiter_redis_errors",
            "Redis calls of the shared limiter that failed (the local share answered).",
            value=limiter.stats.redis_errors,
        )


def _queue_series(slots: ConcurrencyLimiter) -> Iterable[Metric]:
    yield GaugeMetricFamily(
        "gateway_upstream_slots_in_use",
        "Upstream requests holding a concurrency slot.",
        value=slots.in_flight,
    )
    yield GaugeMetricFamily(
        "gateway_upstream_queue_depth",
        "Calls waiting for a concurrency slot.",
        value=slots.waiting,
    )
    refusals = CounterMetricFamily(
        "gateway_upstream_queue_refusals",
        "Calls refused by the concurrency limit: queue full, or deadline passed waiting.",
        labels=("reason",),
    )
    refusals.add_metric(("full",), slots.stats.rejected_full)
    refusals.add_metric(("timeout",), slots.stats.timed_out)
    yield refusals


def _breaker_series(breakers: Breakers) -> Iterable[Metric]:
    """The upstream's breaker as ``breaker="upstream"``, each route's by its template."""
    every = [("upstream", breakers.upstream), *sorted(breakers.routes.items())]
    state = GaugeMetricFamily(
        "gateway_circuit_breaker_state",
        "Each circuit breaker's state (the whole upstream's, and each route's): 1 for the "
        "current one.",
        labels=("breaker", "state"),
    )
    opened = CounterMetricFamily(
        "gateway_circuit_breaker_opened", "Times the breaker opened.", labels=("breaker",)
    )
    fast = CounterMetricFamily(
        "gateway_circuit_breaker_fast_failures",
        "Calls refused at once while the breaker was open.",
        labels=("breaker",),
    )
    for name, breaker in every:
        current = breaker.state
        for each in BreakerState:
            state.add_metric((name, each.value), 1.0 if each is current else 0.0)
        opened.add_metric((name,), breaker.stats.opened)
        fast.add_metric((name,), breaker.stats.fast_failures)
    yield state
    yield opened
    yield fast
