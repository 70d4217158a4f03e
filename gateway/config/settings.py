"""The settings table: every ``GATEWAY_*`` variable, its flag, its parser and its help.

:data:`SETTINGS` is the single list of them; the CLI builds its flags from it, the loader
reads them, and the README's configuration table is checked against it by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.call import CALLER_SOURCES
from gateway.config.parsers import (
    boolean,
    choice,
    costs,
    header_names,
    non_negative_float,
    non_negative_int,
    optional_host_port,
    parse_host_port,
    parse_url,
    path_list,
    pem_file,
    positive_float,
    positive_int,
    redis_url,
    secret_value,
)
from gateway.transcoding.headers import AUTH_MODES

LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
EVENT_LOOPS: Final = ("auto", "uvloop", "asyncio")
UPSTREAM_CHECKS: Final = ("off", "warn", "fail")
EMULATOR_DIALECTS: Final = ("reference", "deployed")


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
        choice(AUTH_MODES),
        "whose credential goes upstream: the caller's (passthrough), the gateway's "
        "(service), or the caller's when it sends one (passthrough-or-service)",
    ),
    Setting(
        "upstream_api_key",
        "GATEWAY_UPSTREAM_API_KEY",
        "--upstream-api-key",
        secret_value,
        "the gateway's own API key, used only in the service modes",
        secret=True,
    ),
    Setting(
        "tls_cert",
        "GATEWAY_TLS_CERT",
        "--tls-cert",
        pem_file,
        "PEM file: the listener's certificate chain (with GATEWAY_TLS_KEY; reloaded when "
        "it changes)",
    ),
    Setting(
        "tls_key",
        "GATEWAY_TLS_KEY",
        "--tls-key",
        pem_file,
        "PEM file: the private key of GATEWAY_TLS_CERT (unencrypted)",
    ),
    Setting(
        "tls_client_ca",
        "GATEWAY_TLS_CLIENT_CA",
        "--tls-client-ca",
        pem_file,
        "PEM file: CA certificates that sign client certificates; set, every client must "
        "present one (mTLS)",
    ),
    Setting(
        "tls_reload_interval",
        "GATEWAY_TLS_RELOAD_INTERVAL",
        "--tls-reload-interval",
        non_negative_float,
        "seconds between checks of the TLS files for a rotated certificate",
    ),
    Setting(
        "allow_insecure_service_mode",
        "GATEWAY_ALLOW_INSECURE_SERVICE_MODE",
        "--allow-insecure-service-mode",
        boolean,
        "let a service mode listen beyond loopback without client certificates (when "
        "something in front authenticates callers)",
    ),
    Setting(
        "upstream_ca",
        "GATEWAY_UPSTREAM_CA",
        "--upstream-ca",
        pem_file,
        "PEM file: the only CA certificates trusted for an https:// upstream (default: "
        "the system's)",
    ),
    Setting(
        "upstream_concurrency",
        "GATEWAY_UPSTREAM_CONCURRENCY",
        "--upstream-concurrency",
        positive_int,
        "upstream connections in the pool (requests in flight)",
    ),
    Setting(
        "upstream_timeout",
        "GATEWAY_UPSTREAM_TIMEOUT",
        "--upstream-timeout",
        positive_float,
        "seconds allowed for an upstream call when the caller sets no deadline",
    ),
    Setting(
        "connect_timeout",
        "GATEWAY_CONNECT_TIMEOUT",
        "--connect-timeout",
        positive_float,
        "seconds allowed to open an upstream connection",
    ),
    Setting(
        "max_message_bytes",
        "GATEWAY_MAX_MESSAGE_BYTES",
        "--max-message-bytes",
        positive_int,
        "largest gRPC message accepted or sent, and largest upstream body read",
    ),
    Setting(
        "shutdown_grace",
        "GATEWAY_SHUTDOWN_GRACE",
        "--shutdown-grace",
        non_negative_float,
        "seconds in-flight calls get to finish on SIGTERM/SIGINT",
    ),
    Setting(
        "max_connection_age",
        "GATEWAY_MAX_CONNECTION_AGE",
        "--max-connection-age",
        non_negative_float,
        "seconds after which a client connection is asked to reconnect (GOAWAY), so that "
        "clients balancing over DNS find pods added since; 0: never",
    ),
    Setting(
        "shutdown_delay",
        "GATEWAY_SHUTDOWN_DELAY",
        "--shutdown-delay",
        non_negative_float,
        "seconds health reports NOT_SERVING, still serving, before draining starts "
        "(time for load balancers to notice)",
    ),
    Setting(
        "descriptor_sets",
        "GATEWAY_DESCRIPTOR_SETS",
        "--descriptor-sets",
        path_list,
        "comma-separated FileDescriptorSet files whose annotated services are served too",
    ),
    Setting(
        "stream_idle_timeout",
        "GATEWAY_STREAM_IDLE_TIMEOUT",
        "--stream-idle-timeout",
        positive_float,
        "seconds an upstream event stream may stay silent (heartbeats count) before the "
        "call ends with DEADLINE_EXCEEDED",
    ),
    Setting(
        "stream_concurrency",
        "GATEWAY_STREAM_CONCURRENCY",
        "--stream-concurrency",
        positive_int,
        "connections in the separate pool for long-lived upstream streams",
    ),
    Setting(
        "stream_cancel_upstream",
        "GATEWAY_STREAM_CANCEL_UPSTREAM",
        "--stream-cancel-upstream",
        boolean,
        "cancel a run upstream when its caller goes away (best effort)",
    ),
    Setting(
        "watch_min_interval",
        "GATEWAY_WATCH_MIN_INTERVAL",
        "--watch-min-interval",
        positive_float,
        "seconds between polls of a watched resource right after it changed",
    ),
    Setting(
        "watch_max_interval",
        "GATEWAY_WATCH_MAX_INTERVAL",
        "--watch-max-interval",
        positive_float,
        "longest seconds between polls while a watched resource stays the same",
    ),
    Setting(
        "watch_safety_interval",
        "GATEWAY_WATCH_SAFETY_INTERVAL",
        "--watch-safety-interval",
        positive_float,
        "longest seconds between polls when webhooks wake the watchers",
    ),
    Setting(
        "admin_listen",
        "GATEWAY_ADMIN_LISTEN",
        "--admin-listen",
        optional_host_port,
        "HTTP admin address (/healthz, /readyz, /metrics, webhooks), or 'off'",
    ),
    Setting(
        "webhook_secret",
        "GATEWAY_WEBHOOK_SECRET",
        "--webhook-secret",
        secret_value,
        "shared secret of the upstream's webhooks; enables POST /webhooks/gagiteck on "
        "the admin port",
        secret=True,
    ),
    Setting(
        "webhook_tolerance",
        "GATEWAY_WEBHOOK_TOLERANCE",
        "--webhook-tolerance",
        positive_float,
        "seconds a webhook's timestamp may differ from the gateway's clock",
    ),
    Setting(
        "rate_limit_rps",
        "GATEWAY_RATE_LIMIT_RPS",
        "--rate-limit-rps",
        positive_float,
        "global upstream token bucket: requests per second (unset: off)",
    ),
    Setting(
        "rate_limit_burst",
        "GATEWAY_RATE_LIMIT_BURST",
        "--rate-limit-burst",
        positive_float,
        "global bucket size (default: one second's worth)",
    ),
    Setting(
        "caller_rate_limit_rps",
        "GATEWAY_CALLER_RATE_LIMIT_RPS",
        "--caller-rate-limit-rps",
        positive_float,
        "per-caller bucket, keyed by a hash of the caller's credential (unset: off)",
    ),
    Setting(
        "caller_rate_limit_burst",
        "GATEWAY_CALLER_RATE_LIMIT_BURST",
        "--caller-rate-limit-burst",
        positive_float,
        "per-caller bucket size (default: one second's worth)",
    ),
    Setting(
        "caller_identity",
        "GATEWAY_CALLER_IDENTITY",
        "--caller-identity",
        choice(CALLER_SOURCES),
        "what tells callers apart for their buckets and stream caps: their credential "
        "(then their client certificate, then their address), or their client certificate "
        "first (needs GATEWAY_TLS_CLIENT_CA)",
    ),
    Setting(
        "caller_max_streams",
        "GATEWAY_CALLER_MAX_STREAMS",
        "--caller-max-streams",
        non_negative_int,
        "streams and watches one caller may hold open in a process (0: no cap)",
    ),
    Setting(
        "digest_salt",
        "GATEWAY_DIGEST_SALT",
        "--digest-salt",
        secret_value,
        "secret salt of the caller keys kept in Redis and of namespaced idempotency keys; "
        "the same in every replica (default: derived from GATEWAY_UPSTREAM_API_KEY, or "
        "random per start without Redis)",
        secret=True,
    ),
    Setting(
        "forward_metadata",
        "GATEWAY_FORWARD_METADATA",
        "--forward-metadata",
        header_names,
        "comma-separated caller metadata names copied onto the upstream requests of a call "
        "(e.g. x-tenant-id)",
    ),
    Setting(
        "return_headers",
        "GATEWAY_RETURN_HEADERS",
        "--return-headers",
        header_names,
        "comma-separated upstream answer headers copied into the response metadata of "
        "unary calls and streams",
    ),
    Setting(
        "allow_sensitive_headers",
        "GATEWAY_ALLOW_SENSITIVE_HEADERS",
        "--allow-sensitive-headers",
        header_names,
        "credential-bearing headers (cookie, set-cookie, x-api-key, …) that the two lists "
        "above may name",
    ),
    Setting(
        "method_costs",
        "GATEWAY_METHOD_COSTS",
        "--method-costs",
        costs,
        "tokens a call costs, per method, e.g. RunAgent=5,AgentService/ListAgents=2 (default 1)",
    ),
    Setting(
        "upstream_queue",
        "GATEWAY_UPSTREAM_QUEUE",
        "--upstream-queue",
        non_negative_int,
        "calls that may wait for an upstream slot; beyond, RESOURCE_EXHAUSTED at once",
    ),
    Setting(
        "redis_url",
        "GATEWAY_REDIS_URL",
        "--redis-url",
        redis_url,
        "keep the rate-limit buckets in Redis, shared by every gateway process",
        secret=True,
    ),
    Setting(
        "replicas",
        "GATEWAY_REPLICAS",
        "--replicas",
        positive_int,
        "gateway processes sharing the quota, a first guess only: with Redis each process "
        "counts the live ones; while Redis is unreachable each admits 1/N of the last count",
    ),
    Setting(
        "retry_max_attempts",
        "GATEWAY_RETRY_MAX_ATTEMPTS",
        "--retry-max-attempts",
        positive_int,
        "attempts per call, the first included (1: no retries)",
    ),
    Setting(
        "retry_base",
        "GATEWAY_RETRY_BASE",
        "--retry-base",
        non_negative_float,
        "seconds: backoff before retry n is uniform(0, min(cap, base * 2**n))",
    ),
    Setting(
        "retry_cap",
        "GATEWAY_RETRY_CAP",
        "--retry-cap",
        non_negative_float,
        "longest backoff in seconds",
    ),
    Setting(
        "retry_budget_ratio",
        "GATEWAY_RETRY_BUDGET_RATIO",
        "--retry-budget-ratio",
        non_negative_float,
        "retries allowed as a share of calls over the last 10 s (plus 10/s)",
    ),
    Setting(
        "breaker_failures",
        "GATEWAY_BREAKER_FAILURES",
        "--breaker-failures",
        positive_int,
        "consecutive upstream failures that open the circuit breaker",
    ),
    Setting(
        "breaker_open_seconds",
        "GATEWAY_BREAKER_OPEN_SECONDS",
        "--breaker-open-seconds",
        positive_float,
        "seconds the breaker fails fast before letting a probe through",
    ),
    Setting(
        "idempotency_keys",
        "GATEWAY_GENERATE_IDEMPOTENCY_KEYS",
        "--generate-idempotency-keys",
        boolean,
        "give every POST without the caller's idempotency-key one of its own (safe retries)",
    ),
    Setting(
        "workers",
        "GATEWAY_WORKERS",
        "--workers",
        positive_int,
        "gateway processes sharing the port (SO_REUSEPORT); needs GATEWAY_UPSTREAM_URL",
    ),
    Setting(
        "event_loop",
        "GATEWAY_EVENT_LOOP",
        "--event-loop",
        choice(EVENT_LOOPS),
        "auto (uvloop when installed), uvloop, or asyncio",
    ),
    Setting("log_level", "GATEWAY_LOG_LEVEL", "--log-level", choice(LOG_LEVELS), "log level"),
    Setting(
        "log_format",
        "GATEWAY_LOG_FORMAT",
        "--log-format",
        choice(LOG_FORMATS),
        "json (one object a line) or text (for people)",
    ),
    Setting(
        "access_log",
        "GATEWAY_ACCESS_LOG",
        "--access-log",
        boolean,
        "one log line per call (method, code, duration, upstream status, ids) at info level",
    ),
    Setting(
        "emulator_dialect",
        "GATEWAY_EMULATOR_DIALECT",
        "--emulator-dialect",
        choice(EMULATOR_DIALECTS),
        "with no upstream URL: the embedded emulator answers as the API reference "
        "describes it, or as the deployed service does",
    ),
    Setting(
        "check_upstream",
        "GATEWAY_CHECK_UPSTREAM",
        "--check-upstream",
        choice(UPSTREAM_CHECKS),
        "at start, compare the contract with the upstream's /openapi.json: off, warn "
        "(log each drift not accepted), or fail (refuse to start on one)",
    ),
)
