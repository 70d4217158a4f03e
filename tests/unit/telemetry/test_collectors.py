"""The loop-recorded series render exactly as prometheus_client's own would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.telemetry.collectors import LoopCounter, LoopGauge, LoopHistogram
from gateway.telemetry.metrics import RPC_BUCKETS


def _series(registry: CollectorRegistry) -> list[str]:
    """Sample lines without the ``_created`` timestamps only prometheus_client adds."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line and "_created" not in line]


def test_histogram_matches_prometheus_client_on_random_values_and_bucket_edges() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("h_seconds", "doc", ("route", "code"), ours, buckets=RPC_BUCKETS)
    reference = Histogram(
        "h_seconds", "doc", ("route", "code"), registry=theirs, buckets=RPC_BUCKETS
    )
    rng = random.Random(7)
    values = [rng.expovariate(20) for _ in range(2000)] + list(RPC_BUCKETS) + [0.0, 1e9]
    for i, value in enumerate(values):
        labels = ("GET /v1/agents/{agent_id}", "OK" if i % 3 else "NOT_FOUND")
        loop.labels(*labels).observe(value)
        reference.labels(*labels).observe(value)
    assert _series(ours) == _series(theirs)


def test_gauge_and_counter_match_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    gauge = LoopGauge("g", "doc", ("kind",), ours)
    counter = LoopCounter("c", "doc", ("kind",), ours)
    reference_gauge = Gauge("g", "doc", ("kind",), registry=theirs)
    reference_counter = Counter("c", "doc", ("kind",), registry=theirs)
    for kind in ("a", "b"):
        for _ in range(5):
            gauge.labels(kind).inc()
            reference_gauge.labels(kind).inc()
            counter.labels(kind).inc(2)
            reference_counter.labels(kind).inc(2)
        gauge.labels(kind).dec(3)
        reference_gauge.labels(kind).dec(3)
    assert _series(ours) == _series(theirs)


def test_label_count_and_counter_direction_are_checked() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("c", "doc", ("kind",), registry)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram("h", "doc", (), registry, buckets=(1.0, 0.5))


def test_a_name_taken_in_the_registry_is_refused() -> None:
    registry = CollectorRegistry()
    LoopGauge("same", "doc", (), registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Gauge("same", "doc", registry=registry)
