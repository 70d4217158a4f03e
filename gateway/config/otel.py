"""The standard OpenTelemetry variables the gateway honours, read once into a
:class:`~gateway.telemetry.settings.TelemetryConfig`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from gateway.config.parsers import (
    boolean,
    choice,
    endpoint_url,
    key_values,
    millis,
    names,
    positive_int,
    unit_ratio,
)
from gateway.telemetry.settings import OtlpConfig, TelemetryConfig

TRACES_EXPORTERS: Final = ("otlp", "console", "none")
OTLP_PROTOCOLS: Final = ("grpc", "http/protobuf")
SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
PROPAGATORS: Final = ("tracecontext", "baggage", "none")


class _Reader:
    """Reads one variable at a time, collecting what is wrong instead of stopping."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def __call__(self, name: str, parse: Callable[[str], Any], *, secret: bool = False) -> Any:
        raw = self.env.get(name, "").strip()
        if not raw:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={'(hidden)' if secret else repr(raw)}: {exc}")
            return None


def load_telemetry(env: Mapping[str, str]) -> tuple[TelemetryConfig, list[str]]:
    """The standard OpenTelemetry variables the gateway honours, and what is wrong in them."""
    read = _Reader(env)
    values: dict[str, Any] = {}
    attributes = read("OTEL_RESOURCE_ATTRIBUTES", key_values) or ()
    values["resource_attributes"] = attributes
    service = read("OTEL_SERVICE_NAME", str) or dict(attributes).get("service.name")
    if service:
        values["service_name"] = service
    for name, key, parse in (
        ("OTEL_TRACES_SAMPLER", "sampler", choice(SAMPLERS)),
        ("OTEL_TRACES_SAMPLER_ARG", "sampler_ratio", unit_ratio),
        ("OTEL_BSP_SCHEDULE_DELAY", "batch_delay", millis),
        ("OTEL_BSP_EXPORT_TIMEOUT", "batch_timeout", millis),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "batch_queue_size", positive_int),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "batch_size", positive_int),
    ):
        value = read(name, parse)
        if value is not None:
            values[key] = value
    propagators = read("OTEL_PROPAGATORS", names(PROPAGATORS))
    if propagators is not None:
        values["propagators"] = tuple(p for p in propagators if p != "none")
    values["otlp"] = _otlp(read)
    values["traces_exporters"] = _exporters(read)
    config = TelemetryConfig(**values)
    if config.batch_size > config.batch_queue_size:
        read.problems.append(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE"
        )
    return config, read.problems


def _exporters(read: _Reader) -> tuple[str, ...]:
    """Unlike the SDK's own default, an unset ``OTEL_TRACES_EXPORTER`` means ``otlp`` only
    when an OTLP endpoint is set, and no exporter otherwise: a gateway without a collector
    does not trace, and does not retry exports to a collector that is not there."""
    exporters = read("OTEL_TRACES_EXPORTER", names(TRACES_EXPORTERS))
    if exporters is None:
        env = read.env
        configured = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        exporters = ("otlp",) if configured else ()
    if read("OTEL_SDK_DISABLED", boolean):
        exporters = ()
    return tuple(e for e in exporters if e != "none")


def _otlp(read: _Reader) -> OtlpConfig:
    """OTLP settings; a ``TRACES`` variable wins over its generic one."""

    def either(suffix: str, parse: Callable[[str], Any], *, secret: bool = False) -> Any:
        specific = read(f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", parse, secret=secret)
        return (
            specific
            if specific is not None
            else read(f"OTEL_EXPORTER_OTLP_{suffix}", parse, secret=secret)
        )

    protocol = either("PROTOCOL", choice(OTLP_PROTOCOLS)) or "grpc"
    endpoint = read("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint_url)
    if endpoint is None:
        base = read("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint_url)
        if base is not None and protocol == "http/protobuf":
            endpoint = base.rstrip("/") + "/v1/traces"
        else:
            endpoint = base
    return OtlpConfig(
        protocol=protocol,
        endpoint=endpoint,
        headers=either("HEADERS", key_values, secret=True) or (),
        timeout=either("TIMEOUT", millis) or 10.0,
        compression=either("COMPRESSION", choice(("gzip", "none"))),
        insecure=either("INSECURE", boolean),
    )
