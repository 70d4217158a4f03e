"""The gateway's metrics, in the Prometheus text format served at ``GET /metrics``.

Built on ``prometheus_client`` with a private :class:`~prometheus_client.CollectorRegistry`
per gateway, rendered by ``generate_latest`` on the admin port (why not the OpenTelemetry
metrics SDK: docs/decisions/003-loop-metric-collectors.md). Label values are bounded by
construction: gRPC service, method and code names, route *templates*
(``GET /v1/agents/{agent_id}``, never a path with an id), HTTP status codes, pool and stream
kinds. Children are bound once (per route at start-up, per code on first use) so recording
a call is a dictionary lookup, not label validation. The per-call series are
:mod:`gateway.telemetry.collectors`; the traffic-control series are read from the limiters'
own counters when scraped (:class:`gateway.traffic.collector.TrafficCollector`).

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
==========================================  =========  ====================================
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import Final

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.registry import Collector

from gateway.telemetry.collectors import (
    HistogramChild,
    LoopCounter,
    LoopGauge,
    LoopHistogram,
)
from gateway.version import __version__

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
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls(self.registry)
        self._upstream_series(self.registry)
        self._streams(self.registry)
        build = Gauge(
            "gateway_build_info",
            "Always 1; the labels say what is running.",
            ("version", "python", "grpcio"),
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version(), grpc.__version__).set(1)
        self._upstream: dict[tuple[str, int | str], HistogramChild] = {}
        self._retries: dict[str, Counter] = {}

    def _calls(self, registry: CollectorRegistry) -> None:
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

    def _upstream_series(self, registry: CollectorRegistry) -> None:
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

    def _streams(self, registry: CollectorRegistry) -> None:
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
        self.sse_open = self.streams_open.labels("sse")
        self.watch_open = self.streams_open.labels("watch")
        self.webhooks_accepted = self.webhook_deliveries.labels("accepted")
        self.webhooks_rejected = self.webhook_deliveries.labels("rejected")

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

    def register(self, collector: Collector) -> None:
        """Add a collector of another stage's counters (read on scrape)."""
        self.registry.register(collector)

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
