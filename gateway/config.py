"""Gateway settings: one table, read once at the edge into a frozen, validated object.

Every setting is a command-line flag and a ``GATEWAY_*`` environment variable (flags win).
:data:`SETTINGS` is the single list of them; the CLI builds its flags from it and the
README's configuration table is checked against it by a test.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

AuthMode = Literal["passthrough", "service", "passthrough-or-service"]
AUTH_MODES: Final = ("passthrough", "service", "passthrough-or-service")
LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
EVENT_LOOPS: Final = ("auto", "uvloop", "asyncio")
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
SERVICE_NAME: Final = "gagiteck-gateway"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


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


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs to start; build it with :func:`load_config`."""

    listen: HostPort = HostPort("127.0.0.1", 50051)
    upstream_url: str | None = None
    auth_mode: AuthMode = "passthrough"
    upstream_api_key: str | None = field(default=None, repr=False)
    upstream_concurrency: int = 64
    upstream_timeout: float = 30.0
    connect_timeout: float = 5.0
    max_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace: float = 10.0
    shutdown_delay: float = 1.0
    descriptor_sets: tuple[str, ...] = ()
    stream_idle_timeout: float = 60.0
    stream_concurrency: int = 256
    stream_cancel_upstream: bool = True
    watch_min_interval: float = 0.25
    watch_max_interval: float = 5.0
    watch_safety_interval: float = 30.0
    admin_listen: HostPort | None = HostPort("127.0.0.1", 9464)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_tolerance: float = 300.0
    log_level: str = "info"
    log_format: str = "json"
    access_log: bool = True
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    caller_rate_limit_rps: float | None = None
    caller_rate_limit_burst: float | None = None
    method_costs: tuple[tuple[str, float], ...] = ()
    upstream_queue: int = 128
    redis_url: str | None = field(default=None, repr=False)
    replicas: int = 1
    retry_max_attempts: int = 3
    retry_base: float = 0.1
    retry_cap: float = 2.0
    retry_budget_ratio: float = 0.2
    breaker_failures: int = 5
    breaker_open_seconds: float = 10.0
    idempotency_keys: bool = True
    workers: int = 1
    event_loop: str = "auto"
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    @property
    def embedded_emulator(self) -> bool:
        return self.upstream_url is None


# --------------------------------------------------------------------------- parsers


def parse_host_port(text: str) -> HostPort:
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:50051 or [::]:50051")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    if host not in ("localhost", "0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(part.isalnum() or "-" in part for part in host.split(".")):
                raise ValueError(f"host {host!r} is neither an IP address nor a name") from None
    return HostPort(host, port)


def parse_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL such as https://api.mimoai.co")
    if parts.query or parts.fragment:
        raise ValueError("the base URL must not carry a query or fragment")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL; use GATEWAY_UPSTREAM_API_KEY")
    return text.strip().rstrip("/")


def _optional_host_port(text: str) -> HostPort | None:
    if text.strip().lower() in ("off", "none", "disabled"):
        return None
    return parse_host_port(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _costs(text: str) -> tuple[tuple[str, float], ...]:
    from gateway.limits import parse_costs

    return tuple(parse_costs(text).items())


def _redis_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError("expected redis://HOST:PORT/DB, rediss://… or unix:///path")
    return text.strip()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _paths(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _secret(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    if any(ch in value for ch in "\r\n"):
        raise ValueError("must not contain line breaks")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # GatewayConfig attribute
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("listen", "GATEWAY_LISTEN", "--listen", parse_host_port, "gRPC listen address"),
    Setting(
        "upstream_url",
        "GATEWAY_UPSTREAM_URL",
        "--upstream-url",
        parse_url,
        "base URL of the REST API; unset starts the embedded emulator",
    ),
    Setting(
        "auth_mode",
        "GATEWAY_AUTH_MODE",
        "--auth-mode",
        _choice(AUTH_MODES),
        "whose credential goes upstream: the caller's (passthrough), the gateway's "
        "(service), or the caller's when it sends one (passthrough-or-service)",
    ),
    Setting(
        "upstream_api_key",
        "GATEWAY_UPSTREAM_API_KEY",
        "--upstream-api-key",
        _secret,
        "the gateway's own API key, used only in the service modes",
        secret=True,
    ),
    Setting(
        "upstream_concurrency",
        "GATEWAY_UPSTREAM_CONCURRENCY",
        "--upstream-concurrency",
        _positive_int,
        "upstream connections in the pool (requests in flight)",
    ),
    Setting(
        "upstream_timeout",
        "GATEWAY_UPSTREAM_TIMEOUT",
        "--upstream-timeout",
        _positive_float,
        "seconds allowed for an upstream call when the caller sets no deadline",
    ),
    Setting(
        "connect_timeout",
        "GATEWAY_CONNECT_TIMEOUT",
        "--connect-timeout",
        _positive_float,
        "seconds allowed to open an upstream connection",
    ),
    Setting(
        "max_message_bytes",
        "GATEWAY_MAX_MESSAGE_BYTES",
        "--max-message-bytes",
        _positive_int,
        "largest gRPC message accepted or sent, and largest upstream body read",
    ),
    Setting(
        "shutdown_grace",
        "GATEWAY_SHUTDOWN_GRACE",
        "--shutdown-grace",
        _non_negative_float,
        "seconds in-flight calls get to finish on SIGTERM/SIGINT",
    ),
    Setting(
        "shutdown_delay",
        "GATEWAY_SHUTDOWN_DELAY",
        "--shutdown-delay",
        _non_negative_float,
        "seconds health reports NOT_SERVING, still serving, before draining starts "
        "(time for load balancers to notice)",
    ),
    Setting(
        "descriptor_sets",
        "GATEWAY_DESCRIPTOR_SETS",
        "--descriptor-sets",
        _paths,
        "comma-separated FileDescriptorSet files whose annotated services are served too",
    ),
    Setting(
        "stream_idle_timeout",
        "GATEWAY_STREAM_IDLE_TIMEOUT",
        "--stream-idle-timeout",
        _positive_float,
        "seconds an upstream event stream may stay silent (heartbeats count) before the "
        "call ends with DEADLINE_EXCEEDED",
    ),
    Setting(
        "stream_concurrency",
        "GATEWAY_STREAM_CONCURRENCY",
        "--stream-concurrency",
        _positive_int,
        "connections in the separate pool for long-lived upstream streams",
    ),
    Setting(
        "stream_cancel_upstream",
        "GATEWAY_STREAM_CANCEL_UPSTREAM",
        "--stream-cancel-upstream",
        _bool,
        "cancel a run upstream when its caller goes away (best effort)",
    ),
    Setting(
        "watch_min_interval",
        "GATEWAY_WATCH_MIN_INTERVAL",
        "--watch-min-interval",
        _positive_float,
        "seconds between polls of a watched resource right after it changed",
    ),
    Setting(
        "watch_max_interval",
        "GATEWAY_WATCH_MAX_INTERVAL",
        "--watch-max-interval",
        _positive_float,
        "longest seconds between polls while a watched resource stays the same",
    ),
    Setting(
        "watch_safety_interval",
        "GATEWAY_WATCH_SAFETY_INTERVAL",
        "--watch-safety-interval",
        _positive_float,
        "longest seconds between polls when webhooks wake the watchers",
    ),
    Setting(
        "admin_listen",
        "GATEWAY_ADMIN_LISTEN",
        "--admin-listen",
        _optional_host_port,
        "HTTP admin address (/healthz, /readyz, /metrics, webhooks), or 'off'",
    ),
    Setting(
        "webhook_secret",
        "GATEWAY_WEBHOOK_SECRET",
        "--webhook-secret",
        _secret,
        "shared secret of the upstream's webhooks; enables POST /webhooks/gagiteck on "
        "the admin port",
        secret=True,
    ),
    Setting(
        "webhook_tolerance",
        "GATEWAY_WEBHOOK_TOLERANCE",
        "--webhook-tolerance",
        _positive_float,
        "seconds a webhook's timestamp may differ from the gateway's clock",
    ),
    Setting(
        "rate_limit_rps",
        "GATEWAY_RATE_LIMIT_RPS",
        "--rate-limit-rps",
        _positive_float,
        "global upstream token bucket: requests per second (unset: off)",
    ),
    Setting(
        "rate_limit_burst",
        "GATEWAY_RATE_LIMIT_BURST",
        "--rate-limit-burst",
        _positive_float,
        "global bucket size (default: one second's worth)",
    ),
    Setting(
        "caller_rate_limit_rps",
        "GATEWAY_CALLER_RATE_LIMIT_RPS",
        "--caller-rate-limit-rps",
        _positive_float,
        "per-caller bucket, keyed by a hash of the caller's credential (unset: off)",
    ),
    Setting(
        "caller_rate_limit_burst",
        "GATEWAY_CALLER_RATE_LIMIT_BURST",
        "--caller-rate-limit-burst",
        _positive_float,
        "per-caller bucket size (default: one second's worth)",
    ),
    Setting(
        "method_costs",
        "GATEWAY_METHOD_COSTS",
        "--method-costs",
        _costs,
        "tokens a call costs, per method, e.g. RunAgent=5,AgentService/ListAgents=2 (default 1)",
    ),
    Setting(
        "upstream_queue",
        "GATEWAY_UPSTREAM_QUEUE",
        "--upstream-queue",
        _non_negative_int,
        "calls that may wait for an upstream slot; beyond, RESOURCE_EXHAUSTED at once",
    ),
    Setting(
        "redis_url",
        "GATEWAY_REDIS_URL",
        "--redis-url",
        _redis_url,
        "keep the rate-limit buckets in Redis, shared by every gateway process",
        secret=True,
    ),
    Setting(
        "replicas",
        "GATEWAY_REPLICAS",
        "--replicas",
        _positive_int,
        "gateway processes sharing the quota; while Redis is unreachable each admits 1/N",
    ),
    Setting(
        "retry_max_attempts",
        "GATEWAY_RETRY_MAX_ATTEMPTS",
        "--retry-max-attempts",
        _positive_int,
        "attempts per call, the first included (1: no retries)",
    ),
    Setting(
        "retry_base",
        "GATEWAY_RETRY_BASE",
        "--retry-base",
        _non_negative_float,
        "seconds: backoff before retry n is uniform(0, min(cap, base * 2**n))",
    ),
    Setting(
        "retry_cap",
        "GATEWAY_RETRY_CAP",
        "--retry-cap",
        _non_negative_float,
        "longest backoff in seconds",
    ),
    Setting(
        "retry_budget_ratio",
        "GATEWAY_RETRY_BUDGET_RATIO",
        "--retry-budget-ratio",
        _non_negative_float,
        "retries allowed as a share of calls over the last 10 s (plus 10/s)",
    ),
    Setting(
        "breaker_failures",
        "GATEWAY_BREAKER_FAILURES",
        "--breaker-failures",
        _positive_int,
        "consecutive upstream failures that open the circuit breaker",
    ),
    Setting(
        "breaker_open_seconds",
        "GATEWAY_BREAKER_OPEN_SECONDS",
        "--breaker-open-seconds",
        _positive_float,
        "seconds the breaker fails fast before letting a probe through",
    ),
    Setting(
        "idempotency_keys",
        "GATEWAY_GENERATE_IDEMPOTENCY_KEYS",
        "--generate-idempotency-keys",
        _bool,
        "give every POST without the caller's idempotency-key one of its own (safe retries)",
    ),
    Setting(
        "workers",
        "GATEWAY_WORKERS",
        "--workers",
        _positive_int,
        "gateway processes sharing the port (SO_REUSEPORT); needs GATEWAY_UPSTREAM_URL",
    ),
    Setting(
        "event_loop",
        "GATEWAY_EVENT_LOOP",
        "--event-loop",
        _choice(EVENT_LOOPS),
        "auto (uvloop when installed), uvloop, or asyncio",
    ),
    Setting("log_level", "GATEWAY_LOG_LEVEL", "--log-level", _choice(LOG_LEVELS), "log level"),
    Setting(
        "log_format",
        "GATEWAY_LOG_FORMAT",
        "--log-format",
        _choice(LOG_FORMATS),
        "json (one object a line) or text (for people)",
    ),
    Setting(
        "access_log",
        "GATEWAY_ACCESS_LOG",
        "--access-log",
        _bool,
        "one log line per call (method, code, duration, upstream status, ids) at info level",
    ),
)


def load_config(
    env: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> GatewayConfig:
    """Read settings from ``env`` and flag ``overrides`` (raw strings); validate them all."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    overrides = overrides or {}
    for setting in SETTINGS:
        raw = overrides.get(setting.name)
        source = setting.flag
        if raw is None:
            raw = env.get(setting.env)
            source = setting.env
        if raw is None or raw == "":
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(raw)
            problems.append(f"{source}={shown}: {exc}")
    telemetry, telemetry_problems = load_telemetry(env)
    problems.extend(telemetry_problems)
    config = GatewayConfig(**values, telemetry=telemetry)
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _cross_checks(config: GatewayConfig) -> list[str]:
    problems = []
    if config.auth_mode != "passthrough" and not config.upstream_api_key:
        problems.append(
            f"GATEWAY_AUTH_MODE={config.auth_mode} needs the gateway's key: "
            "set GATEWAY_UPSTREAM_API_KEY (or --upstream-api-key)"
        )
    if config.watch_min_interval > config.watch_max_interval:
        problems.append("GATEWAY_WATCH_MIN_INTERVAL must not exceed GATEWAY_WATCH_MAX_INTERVAL")
    if config.webhook_secret and config.admin_listen is None:
        problems.append("GATEWAY_WEBHOOK_SECRET needs the admin port: set GATEWAY_ADMIN_LISTEN")
    if config.workers > 1 and config.upstream_url is None:
        problems.append(
            "GATEWAY_WORKERS > 1 needs GATEWAY_UPSTREAM_URL: each worker would otherwise "
            "start an emulator of its own (run `gagiteck-gateway emulator` once instead)"
        )
    if config.workers > 1 and config.listen.port == 0:
        problems.append("GATEWAY_WORKERS > 1 needs a fixed port in GATEWAY_LISTEN, not 0")
    if config.max_message_bytes < 1024:
        problems.append("GATEWAY_MAX_MESSAGE_BYTES must be at least 1024")
    return problems


# --------------------------------------------------------------------------- OTEL_*


def load_telemetry(env: Mapping[str, str]) -> tuple[TelemetryConfig, list[str]]:
    """The standard OpenTelemetry variables the gateway honours, and what is wrong in them.

    Unlike the SDK's own default, an unset ``OTEL_TRACES_EXPORTER`` means ``otlp`` only
    when an OTLP endpoint is set, and no exporter otherwise: a gateway without a collector
    does not trace, and does not retry exports to a collector that is not there.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}

    def read(name: str, parse: Callable[[str], Any], *, secret: bool = False) -> Any:
        raw = env.get(name, "").strip()
        if not raw:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            problems.append(f"{name}={'(hidden)' if secret else repr(raw)}: {exc}")
            return None

    attributes = read("OTEL_RESOURCE_ATTRIBUTES", _key_values) or ()
    values["resource_attributes"] = attributes
    service = read("OTEL_SERVICE_NAME", str) or dict(attributes).get("service.name")
    if service:
        values["service_name"] = service
    sampler = read("OTEL_TRACES_SAMPLER", _choice(SAMPLERS))
    if sampler:
        values["sampler"] = sampler
    ratio = read("OTEL_TRACES_SAMPLER_ARG", _ratio)
    if ratio is not None:
        values["sampler_ratio"] = ratio
    propagators = read("OTEL_PROPAGATORS", _names(PROPAGATORS))
    if propagators is not None:
        values["propagators"] = tuple(p for p in propagators if p != "none")
    values["otlp"] = _otlp(read)
    exporters = read("OTEL_TRACES_EXPORTER", _names(TRACES_EXPORTERS))
    if exporters is None:
        configured = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        exporters = ("otlp",) if configured else ()
    if read("OTEL_SDK_DISABLED", _bool):
        exporters = ()
    values["traces_exporters"] = tuple(e for e in exporters if e != "none")
    for name, key, parse in (
        ("OTEL_BSP_SCHEDULE_DELAY", "batch_delay", _millis),
        ("OTEL_BSP_EXPORT_TIMEOUT", "batch_timeout", _millis),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "batch_queue_size", _positive_int),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "batch_size", _positive_int),
    ):
        value = read(name, parse)
        if value is not None:
            values[key] = value
    config = TelemetryConfig(**values)
    if config.batch_size > config.batch_queue_size:
        problems.append("OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE")
    return config, problems


def _otlp(read: Callable[..., Any]) -> OtlpConfig:
    """OTLP settings; a ``TRACES`` variable wins over its generic one."""

    def either(suffix: str, parse: Callable[[str], Any], *, secret: bool = False) -> Any:
        specific = read(f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", parse, secret=secret)
        return (
            specific
            if specific is not None
            else read(f"OTEL_EXPORTER_OTLP_{suffix}", parse, secret=secret)
        )

    protocol = either("PROTOCOL", _choice(OTLP_PROTOCOLS)) or "grpc"
    endpoint = read("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _endpoint)
    if endpoint is None:
        base = read("OTEL_EXPORTER_OTLP_ENDPOINT", _endpoint)
        if base is not None and protocol == "http/protobuf":
            endpoint = base.rstrip("/") + "/v1/traces"
        else:
            endpoint = base
    return OtlpConfig(
        protocol=protocol,
        endpoint=endpoint,
        headers=either("HEADERS", _key_values, secret=True) or (),
        timeout=either("TIMEOUT", _millis) or 10.0,
        compression=either("COMPRESSION", _choice(("gzip", "none"))),
        insecure=either("INSECURE", _bool),
    )


def _key_values(text: str) -> tuple[tuple[str, str], ...]:
    """``k1=v1,k2=v2`` with percent-encoded values (W3C baggage's format)."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        pairs.append((unquote(key.strip()), unquote(value.strip())))
    return tuple(pairs)


def _names(options: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    one = _choice(options)

    def parse(text: str) -> tuple[str, ...]:
        return tuple(one(part) for part in text.split(",") if part.strip())

    return parse


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a ratio between 0 and 1")
    return value


def _millis(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative (milliseconds)")
    return value / 1000.0


def _endpoint(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a URL such as http://collector:4317")
    return text
