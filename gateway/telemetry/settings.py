"""Tracing settings: what the standard ``OTEL_*`` variables chose, frozen.

Read once at the edge by :func:`gateway.config.otel.load_telemetry`; nothing in the
telemetry package reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME: Final = "gagiteck-gateway"


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """Where and how spans are sent over OTLP (the ``OTEL_EXPORTER_OTLP_*`` variables)."""

    protocol: str = "grpc"
    endpoint: str | None = None
    """None: the protocol's default (localhost:4317 for grpc, :4318/v1/traces for http)."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Sent with every export (often the collector's credential: never shown)."""
    timeout: float = 10.0
    """Seconds per export (the variables give milliseconds, as the specification says)."""
    compression: str | None = None
    insecure: bool | None = None


@dataclass(frozen=True)
class TelemetryConfig:
    """Tracing settings from the standard ``OTEL_*`` variables (:func:`load_telemetry`).

    With no exporter configured, tracing is off: no SDK objects are created per call and
    the caller's ``traceparent``, ``tracestate`` and ``baggage`` are forwarded unchanged.
    ``span_exporter`` is the seam for tests and embedders: an exporter instance used, with
    the same batching, instead of the ones ``traces_exporters`` names.
    """

    service_name: str = SERVICE_NAME
    resource_attributes: tuple[tuple[str, str], ...] = ()
    traces_exporters: tuple[str, ...] = ()
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    otlp: OtlpConfig = OtlpConfig()
    batch_delay: float = 5.0
    batch_queue_size: int = 2048
    batch_size: int = 512
    batch_timeout: float = 30.0
    span_exporter: SpanExporter | None = field(default=None, compare=False, repr=False)

    @property
    def tracing(self) -> bool:
        return self.span_exporter is not None or bool(self.traces_exporters)
