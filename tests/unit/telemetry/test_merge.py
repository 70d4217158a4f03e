"""A pod's /metrics: each worker's exposition merged by what each family measures."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.merge import merge_expositions, merge_rule
from gateway.telemetry.metrics import Metrics


def _values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def _worker(calls: int, seconds: float, in_flight: int, state: str, started: float) -> str:
    registry = CollectorRegistry()
    counter = Counter("c", "calls", ("method",), registry=registry)
    counter.labels("Get").inc(calls)
    histogram = Histogram("h_seconds", "time", registry=registry, buckets=(0.1, 1.0))
    histogram.observe(seconds)
    Gauge("g", "in flight", registry=registry).set(in_flight)
    breaker = Gauge("b_state", "breaker", ("state",), registry=registry)
    for each in ("closed", "open"):
        breaker.labels(each).set(1 if each == state else 0)
    Gauge("build_info", "build", ("version",), registry=registry).labels("1.0").set(1)
    Gauge("process_start_time_seconds", "start", registry=registry).set(started)
    return generate_latest(registry).decode()


def test_counters_histograms_and_gauges_add_up_states_and_infos_take_the_largest() -> None:
    workers = [_worker(3, 0.05, 2, "closed", 100.0), _worker(4, 0.5, 1, "open", 90.0)]
    created = [_values(text.encode())["c_created", (("method", "Get"),)] for text in workers]
    merged = _values(merge_expositions(workers))
    assert merged["c_total", (("method", "Get"),)] == 7
    assert merged["h_seconds_bucket", (("le", "0.1"),)] == 1
    assert merged["h_seconds_bucket", (("le", "1.0"),)] == 2
    assert merged["h_seconds_bucket", (("le", "+Inf"),)] == 2
    assert merged["h_seconds_count", ()] == 2
    assert merged["h_seconds_sum", ()] == pytest.approx(0.55)
    assert merged["g", ()] == 3
    assert merged["b_state", (("state", "closed"),)] == 1  # some worker is closed
    assert merged["b_state", (("state", "open"),)] == 1  # and some worker is open
    assert merged["build_info", (("version", "1.0"),)] == 1
    assert merged["c_created", (("method", "Get"),)] == min(created)  # the earliest
    # a process's own facts stay per worker
    assert merged["process_start_time_seconds", (("worker", "0"),)] == 100
    assert merged["process_start_time_seconds", (("worker", "1"),)] == 90
    assert ("process_start_time_seconds", ()) not in merged


def test_a_family_not_summed_says_how_it_was_merged() -> None:
    text = merge_expositions([_worker(1, 0.1, 0, "closed", 1.0)] * 2).decode()
    assert "# HELP b_state breaker Across workers: the largest value." in text
    assert "# HELP process_start_time_seconds start One series per worker" in text
    assert "# HELP c_total calls\n" in text


def test_a_series_only_one_worker_has_is_kept() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    Counter("c", "calls", ("method",), registry=one).labels("Get").inc(2)
    Counter("c", "calls", ("method",), registry=two).labels("List").inc(5)
    merged = _values(
        merge_expositions([generate_latest(one).decode(), generate_latest(two).decode()])
    )
    assert merged["c_total", (("method", "Get"),)] == 2
    assert merged["c_total", (("method", "List"),)] == 5


@pytest.mark.parametrize(
    ("name", "kind", "rule"),
    [
        ("gateway_rpc_duration_seconds", "histogram", "sum"),
        ("gateway_stream_messages", "counter", "sum"),
        ("gateway_rpcs_in_flight", "gauge", "sum"),
        ("gateway_upstream_connections_limit", "gauge", "sum"),
        ("gateway_circuit_breaker_state", "gauge", "max"),
        ("gateway_build_info", "gauge", "max"),
        ("gateway_webhook_deliveries_created", "gauge", "min"),
        ("process_resident_memory_bytes", "gauge", "worker"),
        ("process_cpu_seconds", "counter", "worker"),
        ("python_gc_objects_collected", "counter", "worker"),
        ("rpc_latency", "summary", "worker"),
        ("something", "unknown", "worker"),
    ],
)
def test_merge_rules(name: str, kind: str, rule: str) -> None:
    assert merge_rule(name, kind) == rule


def test_the_gateways_own_series_merge_and_parse_back() -> None:
    one, two = Metrics(), Metrics()
    for metrics, calls in ((one, 2), (two, 3)):
        child = metrics.rpc_duration.labels("gagiteck.v1.AgentService", "ListAgents", "unary", "OK")
        for _ in range(calls):
            child.observe(0.01)
        metrics.webhooks_accepted.inc()
    merged = _values(merge_expositions([one.render().decode(), two.render().decode()]))
    labels = (
        ("grpc_code", "OK"),
        ("grpc_method", "ListAgents"),
        ("grpc_service", "gagiteck.v1.AgentService"),
        ("grpc_type", "unary"),
    )
    assert merged["gateway_rpc_duration_seconds_count", labels] == 5
    assert merged["gateway_webhook_deliveries_total", (("result", "accepted"),)] == 2
    assert (
        merged["gateway_build_info", next(k for k in merged if k[0] == "gateway_build_info")[1]]
        == 1
    )
