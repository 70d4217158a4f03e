"""Labelled series changed from the event loop's thread only, rendered as prometheus_client does.

The series recorded on every call or stream message (the two duration histograms, calls
in flight, stream messages) use these collectors: children are plain numbers, a record is
a list index and two additions. prometheus_client's own children take a threading lock on
every change and walk the buckets in Python (why and what it saves:
docs/decisions/003-loop-metric-collectors.md). A test holds the rendering to
prometheus_client's, byte for byte.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class CounterChild(GaugeChild):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        raise ValueError("a counter only goes up")


V = TypeVar("V", bound=GaugeChild)


class _ValueMetric(_LoopMetric[V]):
    """A series of plain values, written as ``family`` (gauge or counter)."""

    family: type[GaugeMetricFamily] | type[CounterMetricFamily]

    def collect(self) -> Iterable[Metric]:
        family = self.family(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class LoopGauge(_ValueMetric[GaugeChild]):
    family = GaugeMetricFamily

    def _child(self) -> GaugeChild:
        return GaugeChild()


class LoopCounter(_ValueMetric[CounterChild]):
    """``name`` without ``_total``: the exposition adds it."""

    family = CounterMetricFamily

    def _child(self) -> CounterChild:
        return CounterChild()
