"""The head-sampling fast path decides exactly as the SDK's sampler would, on the same ids.

Calls the sampler drops never reach ``Tracer.start_span``; these tests hold that shortcut
to the SDK: the same keep-or-drop decision, trace id, flags and trace state for roots and
for remote parents, and kept roots recorded with the trace id the decision was taken on.
"""

from __future__ import annotations

import random

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.provider import Telemetry
from gateway.telemetry.sampling import HeadSampling, PresetTraceIds, build_sampler
from gateway.telemetry.server import RpcTelemetry
from gateway.telemetry.settings import TelemetryConfig

METHOD = "/gagiteck.v1.AgentService/GetAgent"
SAMPLERS = [
    ("parentbased_traceidratio", 0.05),
    ("parentbased_traceidratio", 0.5),
    ("traceidratio", 0.3),
    ("traceidratio", 0.0),
    ("parentbased_always_off", 1.0),
    ("always_off", 1.0),
]


def _sdk(name: str, ratio: float) -> tuple[TracerProvider, PresetTraceIds]:
    ids = PresetTraceIds()
    sampler = build_sampler(TelemetryConfig(sampler=name, sampler_ratio=ratio))
    return TracerProvider(sampler=sampler, id_generator=ids, shutdown_on_exit=False), ids


def _carrier(rng: random.Random) -> dict[str, str]:
    trace_id, span_id = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
    flags = rng.choice([0, 1, 2, 3])
    carrier = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}
    if rng.random() < 0.5:
        carrier["tracestate"] = f"vendor=v{rng.randrange(100)},other=x"
    return carrier


@pytest.mark.parametrize(("name", "ratio"), SAMPLERS)
def test_roots_are_decided_as_the_sdk_decides_on_the_same_trace_id(name: str, ratio: float) -> None:
    provider, ids = _sdk(name, ratio)
    head = HeadSampling.for_sampler(name, ratio, ids)
    assert head is not None
    tracer = provider.get_tracer("t")
    kept = 0
    for _ in range(400):
        dropped = head.dropped(None)
        trace_id = dropped.trace_id if dropped is not None else ids.pending
        assert trace_id
        ids.pending = trace_id  # what the SDK would decide with this id
        span = tracer.start_span("x", kind=SpanKind.SERVER)
        assert span.get_span_context().trace_id == trace_id
        assert span.is_recording() == (dropped is None)
        if dropped is not None:
            sdk = span.get_span_context()
            assert (dropped.trace_flags, dropped.is_remote) == (sdk.trace_flags, False)
        kept += dropped is None
    if ratio == 0.0 or name.endswith("always_off"):
        assert kept == 0
    elif ratio >= 0.3:
        assert kept > 0


@pytest.mark.parametrize(("name", "ratio"), SAMPLERS)
def test_remote_parents_are_decided_as_the_sdk_decides(name: str, ratio: float) -> None:
    provider, ids = _sdk(name, ratio)
    head = HeadSampling.for_sampler(name, ratio, ids)
    assert head is not None
    tracer = provider.get_tracer("t")
    propagator = TraceContextTextMapPropagator()
    rng = random.Random(11)
    for _ in range(400):
        carrier = _carrier(rng)
        dropped = head.dropped(carrier)
        span = tracer.start_span("x", context=propagator.extract(carrier), kind=SpanKind.SERVER)
        sdk = span.get_span_context()
        assert span.is_recording() == (dropped is None)
        if dropped is not None:
            assert dropped.trace_id == sdk.trace_id
            assert dropped.trace_flags == sdk.trace_flags
            assert dropped.trace_state == sdk.trace_state
            assert dropped.span_id != int(carrier["traceparent"][36:52], 16)


def test_unusual_headers_and_keep_all_samplers_go_to_the_sdk() -> None:
    ids = PresetTraceIds()
    head = HeadSampling.for_sampler("parentbased_traceidratio", 0.0, ids)
    assert head is not None
    for header in (
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-future",
        "00-00000000000000000000000000000000-b7ad6b7169203331-00",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-00",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-00",
        "garbage",
    ):
        assert head.dropped({"traceparent": header}) is None
    assert ids.pending is None
    for keep_all in ("always_on", "parentbased_always_on"):
        assert HeadSampling.for_sampler(keep_all, 1.0, ids) is None


@pytest.mark.asyncio
async def test_kept_roots_are_recorded_with_the_trace_id_the_decision_was_taken_on() -> None:
    exporter = InMemorySpanExporter()
    config = TelemetryConfig(
        sampler="parentbased_traceidratio", sampler_ratio=0.25, span_exporter=exporter
    )
    telemetry = Telemetry(config, access_log=False)
    telemetry.start()
    try:
        assert telemetry.head is not None
        rpc = RpcTelemetry(telemetry, METHOD, server_streaming=False)
        calls = []
        for _ in range(800):
            call = rpc.begin([])
            call.code = grpc.StatusCode.OK
            call.end(None)
            calls.append(call)
    finally:
        await telemetry.close()  # flushes
    spans = exporter.get_finished_spans()
    bound = TraceIdRatioBased.get_bound_for_rate(0.25)
    recorded = {span.context.trace_id for span in spans if span.context is not None}
    assert 120 < len(recorded) < 280  # 200 expected; the bounds are ~6 standard deviations
    assert all(trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < bound for trace_id in recorded)
    for call in calls:
        assert call.span_context is not None
        assert (call.span_context.trace_id in recorded) == call.recording
        assert call.span_context.trace_flags & TraceFlags.RANDOM_TRACE_ID
