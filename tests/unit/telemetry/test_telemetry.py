"""Telemetry pieces without a server: exporters, samplers, calls and their records."""

from __future__ import annotations

import logging

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOtlp
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpOtlp
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from gateway.config.otel import load_telemetry
from gateway.telemetry.client import ClientTelemetry
from gateway.telemetry.export import build_exporters, build_resource
from gateway.telemetry.provider import Telemetry
from gateway.telemetry.sampling import build_sampler
from gateway.telemetry.server import RpcTelemetry
from gateway.telemetry.settings import OtlpConfig, TelemetryConfig

METHOD = "/gagiteck.v1.AgentService/GetAgent"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("otlp", "kind"),
    [(OtlpConfig(), GrpcOtlp), (OtlpConfig(protocol="http/protobuf"), HttpOtlp)],
    ids=["grpc", "http"],
)
def test_otlp_exporter_follows_the_protocol(otlp: OtlpConfig, kind: type) -> None:
    (exporter,) = build_exporters(TelemetryConfig(traces_exporters=("otlp",), otlp=otlp))
    try:
        assert isinstance(exporter, kind)
    finally:
        exporter.shutdown()


def test_console_and_injected_exporters() -> None:
    (console,) = build_exporters(TelemetryConfig(traces_exporters=("console",)))
    assert isinstance(console, ConsoleSpanExporter)
    injected = InMemorySpanExporter()
    config = TelemetryConfig(traces_exporters=("console",), span_exporter=injected)
    assert build_exporters(config) == [injected]
    assert build_exporters(TelemetryConfig()) == []


def test_sampler_and_resource_from_the_configuration() -> None:
    config, _ = load_telemetry(
        {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_SERVICE_NAME": "edge",
            "OTEL_RESOURCE_ATTRIBUTES": "team=platform",
        }
    )
    sampler = build_sampler(config)
    assert isinstance(sampler, ParentBased)
    assert "0.25" in str(sampler.get_description())  # type: ignore[no-untyped-call]
    assert isinstance(build_sampler(TelemetryConfig(sampler="traceidratio")), TraceIdRatioBased)
    resource = build_resource(config).attributes
    assert resource["service.name"] == "edge"
    assert resource["team"] == "platform"


@pytest.mark.asyncio
async def test_tracing_off_creates_no_provider_and_forwards_the_caller() -> None:
    telemetry = Telemetry()
    telemetry.start()
    assert not telemetry.tracing
    call = RpcTelemetry(telemetry, METHOD, server_streaming=False).begin(
        [("traceparent", PARENT), ("authorization", "Bearer x"), ("baggage", "a=1")]
    )
    assert call.span is None
    assert call.context is None
    assert call.forward == {"traceparent": PARENT, "baggage": "a=1"}
    headers: dict[str, str] = {}
    attempt = ClientTelemetry(telemetry, "api", 443, "unary").begin(
        call, "GET", "GET /x", 1, headers
    )
    assert headers == call.forward
    attempt.answered(200)
    attempt.close()
    assert call.attempts == 1
    assert call.upstream_status == 200
    await telemetry.close()
    await telemetry.close()


def test_oversized_trace_headers_are_not_forwarded() -> None:
    call = RpcTelemetry(Telemetry(), METHOD, False).begin(
        [("tracestate", "x" * 600), ("baggage", "a=1")]
    )
    assert call.forward == {"baggage": "a=1"}


@pytest.mark.asyncio
async def test_start_and_close_are_safe_twice() -> None:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(TelemetryConfig(span_exporter=exporter))
    telemetry.start()
    tracer = telemetry.tracer
    telemetry.start()
    assert telemetry.tracer is tracer
    call = RpcTelemetry(telemetry, METHOD, False).begin([])
    call.annotate("gateway.limiter.waited", True)
    call.event("limiter.wait", {"seconds": 0.25})
    call.code = grpc.StatusCode.OK
    call.end(None)
    await telemetry.close()
    await telemetry.close()
    telemetry.start()  # closed for good
    assert not telemetry.tracing
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert (span.attributes or {})["gateway.limiter.waited"] is True
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("limiter.wait", {"seconds": 0.25})
    ]


@pytest.mark.parametrize(
    ("remaining", "code"),
    [
        (None, "CANCELLED"),
        (5.0, "CANCELLED"),
        (0.3, "CANCELLED"),
        (0.0, "DEADLINE_EXCEEDED"),
        (0.06, "DEADLINE_EXCEEDED"),
    ],
)
def test_a_call_ended_without_a_status_was_cancelled(
    remaining: float | None, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    telemetry = Telemetry()
    rpc = RpcTelemetry(telemetry, METHOD, server_streaming=True)
    call = rpc.begin([("traceparent", PARENT)])
    call.sent()
    call.end(remaining)
    call.end(remaining)  # once only
    (record,) = caplog.records
    assert vars(record)["code"] == code
    assert vars(record)["messages"] == 1
    assert vars(record)["trace_id"] == PARENT[3:35]
    assert "span_id" not in vars(record)
    assert record.levelno == (logging.WARNING if code == "DEADLINE_EXCEEDED" else logging.INFO)
    assert rpc.in_flight.value == 0


def test_the_access_log_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    call = RpcTelemetry(Telemetry(access_log=False), METHOD, False).begin([])
    call.code = grpc.StatusCode.OK
    call.end(None)
    assert [r for r in caplog.records if r.name == "gateway.access"] == []
