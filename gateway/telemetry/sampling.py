"""Head sampling: the sampler's decision for calls it drops, taken without the SDK.

:func:`build_sampler` is the SDK sampler ``OTEL_TRACES_SAMPLER`` names. At a low sampling
ratio most calls are dropped, and for each the SDK's ``start_span`` would build sampler
inputs, ids and a non-recording span; :class:`HeadSampling` takes the same decision on the
same ids directly (why and what it saves: docs/decisions/004-head-sampling.md).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, TraceFlags, TraceState

from gateway.telemetry.settings import TelemetryConfig


def build_sampler(config: TelemetryConfig) -> Sampler:
    ratio = TraceIdRatioBased(config.sampler_ratio)
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[config.sampler]


class PresetTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id drawn beforehand can be handed in.

    :class:`HeadSampling` draws a root call's trace id to take the sampler's decision
    itself; when the call is sampled, the SDK must give the span that very id, which it
    takes from its id generator (the SDK's documented extension point).
    """

    def __init__(self) -> None:
        self.pending: int | None = None

    def generate_trace_id(self) -> int:
        pending, self.pending = self.pending, None
        return pending if pending is not None else super().generate_trace_id()


_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_SAMPLED: Final = int(TraceFlags.SAMPLED)
_RANDOM: Final = int(TraceFlags.RANDOM_TRACE_ID)
_RANDOM_UNSAMPLED: Final = TraceFlags(_RANDOM)  # made once: the flags of a dropped root
_DEFAULT_STATE: Final = TraceState()


class HeadSampling:
    """The configured sampler's decision for calls it drops, taken without the SDK.

    Most calls are dropped at a low sampling ratio, and for them the SDK's ``start_span``
    builds sampler inputs, ids, a span context and a non-recording span. The rules here
    are the SDK sampler's own, applied to the same ids:

    * no valid ``traceparent``: a random trace id; ``traceidratio`` keeps it when its low
      64 bits are below the sampler's bound, ``always_off`` never;
    * a ``traceparent`` (the common ``00-…`` form) with ``parentbased_*``: the parent's
      sampled flag decides; with plain ``traceidratio`` the parent's trace id does.

    A call to keep, an unusual header, or another sampler go through ``start_span`` as
    before (a kept root with the pre-drawn trace id, see :class:`PresetTraceIds`). Only
    built for the W3C propagators, whose headers are the ones read here.
    """

    def __init__(self, name: str, ratio: float, ids: PresetTraceIds) -> None:
        self.parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        self.bound = TraceIdRatioBased.get_bound_for_rate(ratio) if root == "traceidratio" else 0
        self.ids = ids
        self.random = random.Random(int.from_bytes(os.urandom(16), "big"))

    @classmethod
    def for_sampler(cls, name: str, ratio: float, ids: PresetTraceIds) -> HeadSampling | None:
        """None for the samplers that keep every root (nothing to gain)."""
        if name.removeprefix("parentbased_") not in ("traceidratio", "always_off"):
            return None
        return cls(name, ratio, ids)

    def dropped(self, carrier: Mapping[str, str] | None) -> SpanContext | None:
        """The call's span context when the sampler drops it; None: ask the SDK."""
        header = carrier.get("traceparent") if carrier is not None else None
        if header is None:
            trace_id = 0
            while not trace_id:
                trace_id = self.random.getrandbits(128)
            if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound:
                self.ids.pending = trace_id
                return None
            return SpanContext(trace_id, self._span_id(), False, _RANDOM_UNSAMPLED)
        match = _TRACEPARENT.fullmatch(header)
        if match is None:
            return None
        trace_id, parent_id = int(match[1], 16), int(match[2], 16)
        if not trace_id or not parent_id:
            return None
        flags = int(match[3], 16)
        if self.parent_based:
            if flags & _SAMPLED:
                return None
        elif trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound:
            return None
        assert carrier is not None
        state = carrier.get("tracestate")
        return SpanContext(
            trace_id,
            self._span_id(),
            False,
            TraceFlags(flags & _RANDOM),
            TraceState.from_header([state]) if state else _DEFAULT_STATE,
        )

    def _span_id(self) -> int:
        span_id = 0
        while not span_id:
            span_id = self.random.getrandbits(64)
        return span_id
