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
use) so recording a call is a dictionary lookup, not label validation.

The series recorded on every call or stream message (the two duration histograms, calls
in flight, stream messages) are :class:`LoopHistogram`, :class:`LoopGauge` and
:class:`LoopCounter`: collectors of this registry whose children are plain numbers
changed from the event loop's thread only. prometheus_client's own children take a
threading lock on every change and walk the buckets in Python, four times per call; here
a record is a list index and two additions (with channelz off in the same commit, the
gateway went from 299 to 286 µs of CPU per call: docs/BENCHMARKS.md). Everything else
changes rarely and stays prometheus_client's.

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
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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

C = TypeVar("C")


def _go_float(value: float) -> str:
    """A bucket bound as prometheus_client writes it (``0.005``, ``1.0``, ``+Inf``)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


class _LoopMetric(Collector, Generic[C]):
    """A labelled series whose children are changed from the event loop's thread only."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        registry.register(self)

    def labels(self, *values: str) -> C:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._child()
        return child

    def _child(self) -> C:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return self.collect()


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is the +Inf bucket's own share
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram(_LoopMetric[HistogramChild]):
    """Prometheus histogram semantics (``le`` buckets, ``_sum``, ``_count``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"{name}: buckets must be increasing")
        self._les = [_go_float(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames, registry)

    def _child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            running = 0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self._les, child.counts, strict=True):
                running += count
                buckets.append((le, running))
            family.add_metric(values, buckets, child.sum)
        yield family


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class LoopGauge(_LoopMetric[GaugeChild]):
    def _child(self) -> GaugeChild:
        return GaugeChild()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        _add_values(family, self._children)
        yield family


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class LoopCounter(_LoopMetric[CounterChild]):
    """``name`` without ``_total``: the exposition adds it."""

    def _child(self) -> CounterChild:
        return CounterChild()

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        _add_values(family, self._children)
        yield family


def _add_values(
    family: GaugeMetricFamily | CounterMetricFamily,
    children: Mapping[tuple[str, ...], GaugeChild | CounterChild],
) -> None:
    for values, child in list(children.items()):
        family.add_metric(values, child.value)


class Metrics:
    """Every series of one gateway, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.rpc_duration = LoopHistogram(
            "gateway_rpc_duration_seconds",
            "Time from a call's arrival to its status, by method and gRPC code.",
            ("grpc_service", "grpc_method", "grpc_type", "grpc_code"),
            registry,
            buckets=RPC_BUCKETS,
        )
        self.rpcs_in_flight = LoopGauge(
            "gateway_rpcs_in_flight",
            "Calls being handled now.",
            ("grpc_service", "grpc_method"),
            registry,
        )
        self.stream_messages = LoopCounter(
            "gateway_stream_messages",
            "Messages sent on server-streaming calls (relayed events, watched states).",
            ("grpc_service", "grpc_method"),
            registry,
        )
        self.upstream_duration = LoopHistogram(
            "gateway_upstream_request_duration_seconds",
            "Upstream HTTP exchanges by route template and HTTP status (or 'error' and "
            "'timeout' when no answer came). Event streams are timed to their headers.",
            ("route", "status"),
            registry,
            buckets=UPSTREAM_BUCKETS,
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
        self._upstream: dict[tuple[str, int | str], HistogramChild] = {}
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

    def upstream(self, route: str, status: int | str) -> HistogramChild:
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
