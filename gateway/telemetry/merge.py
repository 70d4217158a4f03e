"""Several processes' ``/metrics`` as one: the series of a pod of workers (``GATEWAY_WORKERS``).

Each worker's exposition is read by prometheus_client's own parser; families are merged
by name, samples by name and labels, and the result is written as ``generate_latest``
writes a registry. How a family is merged depends on what it measures:

==================================================  ========================================
counters; histograms (``_bucket``, ``_sum``,         summed: the pod's counts
``_count``)
gauges                                              summed: calls in flight, open streams,
                                                    pollers, pool sizes are the pod's
gauges named ``*_state`` or ``*_info``               the largest value: a state set reads 1
                                                    for a state some worker is in (several
                                                    states may read 1 when workers differ);
                                                    an info series stays 1
gauges named ``*_created``                          the earliest
``process_*`` and ``python_*`` series, summaries,   one series per worker, labelled
untyped series                                      ``worker="0"``, ``"1"``, …: facts of a
                                                    process (start time, file limits,
                                                    quantiles) that add up to nothing
==================================================  ========================================

A family not summed says how it was merged at the end of its help text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

Rule = Literal["sum", "max", "min", "worker"]

PER_PROCESS_PREFIXES: Final = ("process_", "python_")
SUMMED_TYPES: Final = frozenset({"counter", "gauge", "histogram"})
NOTES: Final[dict[Rule, str]] = {
    "sum": "",
    "max": " Across workers: the largest value.",
    "min": " Across workers: the earliest.",
    "worker": " One series per worker (label worker).",
}

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def merge_rule(name: str, kind: str) -> Rule:
    """How the family ``name`` of type ``kind`` is merged across workers."""
    if name.startswith(PER_PROCESS_PREFIXES) or kind not in SUMMED_TYPES:
        return "worker"
    if kind == "gauge" and name.endswith("_created"):
        return "min"
    if kind == "gauge" and name.endswith(("_state", "_info")):
        return "max"
    return "sum"


def merge_expositions(texts: Sequence[str]) -> bytes:
    """One exposition from each worker's (``texts[i]`` is worker ``i``'s)."""
    families: dict[str, _Family] = {}
    for worker, text in enumerate(texts):
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = _Family(family)
            merged.add(family, str(worker))
    return generate_latest(_Merged(families.values()))


class _Family:
    """One family's samples so far, combined by its rule."""

    def __init__(self, first: Metric) -> None:
        self.name = first.name
        self.documentation = first.documentation
        self.type = first.type
        self.unit = first.unit
        self.rule = merge_rule(first.name, first.type)
        self.values: dict[SampleKey, float] = {}

    def add(self, family: Metric, worker: str) -> None:
        values = self.values
        for sample in family.samples:
            labels = dict(sample.labels)
            if self.rule == "worker":
                labels["worker"] = worker
            key = (sample.name, tuple(sorted(labels.items())))
            seen = values.get(key)
            values[key] = sample.value if seen is None else self._combine(seen, sample.value)

    def _combine(self, seen: float, value: float) -> float:
        if self.rule == "max":
            return max(seen, value)
        if self.rule == "min":
            return min(seen, value)
        return seen + value

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation + NOTES[self.rule], self.type, self.unit)
        for (name, labels), value in self.values.items():
            metric.add_sample(name, dict(labels), value)
        return metric


class _Merged(Collector):
    def __init__(self, families: Iterable[_Family]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return [family.metric() for family in self.families]
