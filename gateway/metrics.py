"""The gateway's metrics, in the Prometheus text format served at ``GET /metrics``.

Built on ``prometheus_client`` with a private :class:`~prometheus_client.CollectorRegistry`
per gateway, rendered by ``generate_latest`` inside the admin port's own aiohttp route.
The OpenTelemetry metrics SDK with its Prometheus exporter was the alternative; it was not
chosen because

* its ``PrometheusMetricReader`` registers a collector in prometheus_client's *global*
  registry, so two gateways in one process (the tests) would mix their series, and it
  cannot be removed again short of shutting the provider down;
* every recording goes through attribute-set hashing and view matching, several times the
  cost of observing a pre-bound prometheus_client child, and metrics are recorded on every
  call whether tracing is on or not;
* it renames series (unit suffixes, ``target_info``), so the names operators alert on
  would depend on the exporter's version.

Label values are bounded by construction: gRPC service, method and code names, route
*templates* (``GET /v1/agents/{agent_id}``, never a path with an id), HTTP status codes,
pool and stream kinds. Children are bound once (per route at start-up, per code on first
use) so recording a call is a dictionary lookup and a lock, not label validation.

Series (see the README's Observability section):

==========================================  =========  ====================================
``gateway_rpc_duration_seconds``            histogram  grpc_service, grpc_method, grpc_type,
                                                       grpc_code
``gateway_rpcs_in_flight``                  gauge      grpc_service, grpc_method
``gateway_stream_messages_total``           counter    grpc_service, grpc_method
``gateway_upstream_request_duration_seconds`` histogram route, status
``gateway_upstream_retries_total``          counter    route
``gateway_upstream_connections_in_use``     gauge      pool
``gateway_upstream_connections_limit``      gauge      pool
``gateway_streams_open``                    gauge      kind (``sse`` relays, ``watch`` watchers)
``gateway_watch_pollers``                   gauge
``gateway_webhook_deliveries_total``        counter    result (accepted, rejected)
``gateway_build_info``                      gauge      version, python, grpcio
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

The traffic-control series are read from the limiters' own counters when scraped
(:class:`TrafficCollector`), so they cost nothing per call.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.breaker import BreakerState
from gateway.limits import LocalLimiter
from gateway.redis_limits import RedisLimiter

if TYPE_CHECKING:
    from gateway.traffic import TrafficControl

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

RPC_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
UPSTREAM_BUCKETS: Final = RPC_BUCKETS[:-1]


class Metrics:
    """Every series of one gateway, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.rpc_duration = Histogram(
            "gateway_rpc_duration_seconds",
            "Time from a call's arrival to its status, by method and gRPC code.",
            ("grpc_service", "grpc_method", "grpc_type", "grpc_code"),
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.rpcs_in_flight = Gauge(
            "gateway_rpcs_in_flight",
            "Calls being handled now.",
            ("grpc_service", "grpc_method"),
            registry=registry,
        )
        self.stream_messages = Counter(
            "gateway_stream_messages",
            "Messages sent on server-streaming calls (relayed events, watched states).",
            ("grpc_service", "grpc_method"),
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_request_duration_seconds",
            "Upstream HTTP exchanges by route template and HTTP status (or 'error' and "
            "'timeout' when no answer came). Event streams are timed to their headers.",
            ("route", "status"),
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries",
            "Upstream attempts beyond the first, by route template.",
            ("route",),
            registry=registry,
        )
        self.upstream_connections = Gauge(
            "gateway_upstream_connections_in_use",
            "Connections of an upstream pool acquired by requests now.",
            ("pool",),
            registry=registry,
        )
        self.upstream_connections_limit = Gauge(
            "gateway_upstream_connections_limit",
            "Size of an upstream pool.",
            ("pool",),
            registry=registry,
        )
        self.streams_open = Gauge(
            "gateway_streams_open",
            "Open streams: upstream event streams being relayed (sse), watchers (watch).",
            ("kind",),
            registry=registry,
        )
        self.watch_pollers = Gauge(
            "gateway_watch_pollers",
            "Pollers shared by the watchers of one resource and credential.",
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "gateway_webhook_deliveries",
            "Webhook deliveries received on the admin port, by result.",
            ("result",),
            registry=registry,
        )
        build = Gauge(
            "gateway_build_info",
            "Always 1; the labels say what is running.",
            ("version", "python", "grpcio"),
            registry=registry,
        )
        build.labels(__version__, platform.python_version(), grpc.__version__).set(1)
        self.sse_open = self.streams_open.labels("sse")
        self.watch_open = self.streams_open.labels("watch")
        self.webhooks_accepted = self.webhook_deliveries.labels("accepted")
        self.webhooks_rejected = self.webhook_deliveries.labels("rejected")
        self._upstream: dict[tuple[str, int | str], Histogram] = {}
        self._retries: dict[str, Counter] = {}

    # -- binding at start-up

    def routes(self, templates: Iterable[str]) -> None:
        """Create the per-route series now, so they read 0 before the first retry."""
        for template in templates:
            self.retries(template)

    def pool(self, name: str, in_use: Callable[[], int], limit: int) -> None:
        self.upstream_connections.labels(name).set_function(in_use)
        self.upstream_connections_limit.labels(name).set(limit)

    def pollers(self, count: Callable[[], int]) -> None:
        self.watch_pollers.set_function(count)

    def traffic(self, control: TrafficControl) -> None:
        self.registry.register(TrafficCollector(control))

    # -- per call

    def upstream(self, route: str, status: int | str) -> Histogram:
        """The duration child for a route and status (bound on first use)."""
        key = (route, status)
        child = self._upstream.get(key)
        if child is None:
            child = self._upstream[key] = self.upstream_duration.labels(route, str(status))
        return child

    def retries(self, route: str) -> Counter:
        child = self._retries.get(route)
        if child is None:
            child = self._retries[route] = self.upstream_retries.labels(route)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TrafficCollector(Collector):
    """Limiter, queue, breaker and retry-budget series, read from their counters on scrape."""

    def __init__(self, control: TrafficControl) -> None:
        self.control = control

    def collect(self) -> Iterable[Metric]:
        control = self.control
        limiter = control.limiter
        calls = CounterMetricFamily(
            "gateway_limiter_calls",
            "Calls through the rate limits: admitted at once, admitted after a wait "
            "(delayed), refused because the wait would outlast the deadline. With Redis, "
            "admissions decided by Redis count as admitted.",
            labels=("outcome",),
        )
        if isinstance(limiter, RedisLimiter):
            shared = limiter.stats
            fallback = limiter.fallback
            local = fallback.stats if isinstance(fallback, LocalLimiter) else None
            decided = shared.redis_calls - shared.redis_errors - shared.refused
            if local is not None:
                calls.add_metric(("admitted",), decided + local.admitted - local.delayed)
                calls.add_metric(("delayed",), local.delayed)
                calls.add_metric(("refused",), shared.refused + local.refused)
            else:
                calls.add_metric(("admitted",), decided)
                calls.add_metric(("refused",), shared.refused)
        elif isinstance(limiter, LocalLimiter):
            stats = limiter.stats
            calls.add_metric(("admitted",), stats.admitted - stats.delayed)
            calls.add_metric(("delayed",), stats.delayed)
            calls.add_metric(("refused",), stats.refused)
        yield calls
        if isinstance(limiter, RedisLimiter):
            yield CounterMetricFamily(
                "gateway_shared_limiter_redis_errors",
                "Redis calls of the shared limiter that failed (the local share answered).",
                value=limiter.stats.redis_errors,
            )
        slots = control.concurrency
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
        breaker = control.breaker
        state = GaugeMetricFamily(
            "gateway_circuit_breaker_state",
            "The upstream circuit breaker's state: 1 for the current one.",
            labels=("state",),
        )
        current = breaker.state
        for each in BreakerState:
            state.add_metric((each.value,), 1.0 if each is current else 0.0)
        yield state
        yield CounterMetricFamily(
            "gateway_circuit_breaker_opened",
            "Times the breaker opened.",
            value=breaker.stats.opened,
        )
        yield CounterMetricFamily(
            "gateway_circuit_breaker_fast_failures",
            "Calls refused at once while the breaker was open.",
            value=breaker.stats.fast_failures,
        )
        yield CounterMetricFamily(
            "gateway_retry_budget_denied",
            "Retries the retry budget did not allow.",
            value=control.budget.denied,
        )
