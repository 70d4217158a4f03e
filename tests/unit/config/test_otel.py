"""The standard OTEL_* variables: read once, validated with the GATEWAY_* settings."""

from __future__ import annotations

import pytest

from gateway.config.gateway import GatewayConfig, load_config
from gateway.config.otel import load_telemetry
from gateway.config.parsers import ConfigError
from gateway.telemetry.settings import OtlpConfig, TelemetryConfig


def _telemetry(**env: str) -> TelemetryConfig:
    config, problems = load_telemetry(env)
    assert problems == []
    return config


def test_no_exporter_unless_one_is_configured() -> None:
    config = _telemetry()
    assert config == TelemetryConfig()
    assert not config.tracing
    assert config.service_name == "gagiteck-gateway"
    assert load_config({}).telemetry == TelemetryConfig()
    assert load_config({}) == GatewayConfig()


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1"}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, ()),
    ],
    ids=["endpoint", "traces-endpoint", "console", "two", "none-wins", "sdk-disabled"],
)
def test_which_exporters(env: dict[str, str], exporters: tuple[str, ...]) -> None:
    config = _telemetry(**env)
    assert config.traces_exporters == exporters
    assert config.tracing is bool(exporters)


def test_sampler_and_service() -> None:
    config = _telemetry(
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.05",
        OTEL_RESOURCE_ATTRIBUTES="service.name=ignored,deployment.environment=prod%20eu",
        OTEL_SERVICE_NAME="edge-gateway",
    )
    assert (config.sampler, config.sampler_ratio) == ("parentbased_traceidratio", 0.05)
    assert config.service_name == "edge-gateway"
    assert ("deployment.environment", "prod eu") in config.resource_attributes
    assert _telemetry(OTEL_RESOURCE_ATTRIBUTES="service.name=a").service_name == "a"


@pytest.mark.parametrize(
    ("env", "otlp"),
    [
        ({}, OtlpConfig()),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "f"},
            None,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            },
            OtlpConfig("http/protobuf", "http://c:4318/v1/traces", (), 2.5, "gzip"),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            OtlpConfig("grpc", "http://c:4318/custom"),
        ),
    ],
    ids=["defaults", "bad-bool", "http-appends-path", "traces-vars-win"],
)
def test_otlp_settings(env: dict[str, str], otlp: OtlpConfig | None) -> None:
    config, problems = load_telemetry(env)
    if otlp is None:
        assert problems == ["OTEL_EXPORTER_OTLP_INSECURE='f': must be true or false"]
    else:
        assert problems == []
        assert config.otlp == otlp


def test_collector_headers_are_secret() -> None:
    config = _telemetry(OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cr3t,x-tenant=a")
    assert config.otlp.headers == (("authorization", "Bearer s3cr3t"), ("x-tenant", "a"))
    assert "s3cr3t" not in repr(config)
    _, problems = load_telemetry({"OTEL_EXPORTER_OTLP_HEADERS": "s3cr3t-without-equals"})
    assert problems == [
        "OTEL_EXPORTER_OTLP_HEADERS=(hidden): expected key=value pairs separated by commas"
    ]


def test_batching_and_propagators() -> None:
    config = _telemetry(
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="10",
        OTEL_BSP_EXPORT_TIMEOUT="1000",
        OTEL_PROPAGATORS="tracecontext",
    )
    assert (config.batch_delay, config.batch_queue_size, config.batch_size) == (0.2, 100, 10)
    assert config.batch_timeout == 1.0
    assert config.propagators == ("tracecontext",)
    assert _telemetry(OTEL_PROPAGATORS="none").propagators == ()


def test_bad_otel_settings_are_reported_with_the_others() -> None:
    env = {
        "GATEWAY_LISTEN": "nope",
        "OTEL_TRACES_SAMPLER": "sometimes",
        "OTEL_TRACES_SAMPLER_ARG": "1.5",
        "OTEL_TRACES_EXPORTER": "zipkin",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_PROPAGATORS": "b3",
        "OTEL_BSP_MAX_QUEUE_SIZE": "1",
    }
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    text = str(caught.value)
    for says in (
        "GATEWAY_LISTEN",
        "OTEL_TRACES_SAMPLER='sometimes': must be one of always_on",
        "OTEL_TRACES_SAMPLER_ARG='1.5': must be a ratio between 0 and 1",
        "OTEL_TRACES_EXPORTER='zipkin': must be one of otlp, console, none",
        "OTEL_EXPORTER_OTLP_PROTOCOL='http/json': must be one of grpc, http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4317': expected a URL",
        "OTEL_PROPAGATORS='b3'",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
    ):
        assert says in text, says
