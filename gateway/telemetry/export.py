"""The tracing pieces ``OTEL_*`` selects: propagators, span exporters, the resource."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.settings import OtlpConfig, TelemetryConfig
from gateway.version import __version__


def build_propagator(names: Iterable[str]) -> TextMapPropagator:
    parts: list[TextMapPropagator] = []
    for name in names:
        if name == "tracecontext":
            parts.append(TraceContextTextMapPropagator())
        elif name == "baggage":
            parts.append(W3CBaggagePropagator())
    return CompositePropagator(parts)


def build_exporters(config: TelemetryConfig) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (or the injected one)."""
    if config.span_exporter is not None:
        return [config.span_exporter]
    exporters: list[SpanExporter] = []
    for name in config.traces_exporters:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter(service_name=config.service_name))
        elif name == "otlp":
            exporters.append(_otlp_exporter(config.otlp))
    return exporters


def _otlp_exporter(otlp: OtlpConfig) -> SpanExporter:
    headers = dict(otlp.headers)
    if otlp.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(
            endpoint=otlp.endpoint or "http://localhost:4318/v1/traces",
            headers=headers,
            timeout=otlp.timeout,
            compression=Compression(otlp.compression or "none"),
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter(
        endpoint=otlp.endpoint or "http://localhost:4317",
        insecure=otlp.insecure,
        headers=headers,
        timeout=otlp.timeout,
        compression=grpc.Compression.Gzip
        if otlp.compression == "gzip"
        else grpc.Compression.NoCompression,
    )


def build_resource(config: TelemetryConfig) -> Resource:
    """The resource from the configuration alone (``Resource.create`` would read the
    environment again)."""
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.version": __version__,
        **dict(config.resource_attributes),
        "service.name": config.service_name,
    }
    return Resource(attributes)
