"""Gateway settings: one table, read once at the edge into a frozen, validated object.

Every setting is a command-line flag and a ``GATEWAY_*`` environment variable (flags win).
:data:`SETTINGS` is the single list of them; the CLI builds its flags from it and the
README's configuration table is checked against it by a test.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

AuthMode = Literal["passthrough", "service", "passthrough-or-service"]
AUTH_MODES: Final = ("passthrough", "service", "passthrough-or-service")
LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


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

    @property
    def embedded_emulator(self) -> bool:
        return self.upstream_url is None

    def with_upstream(self, url: str) -> GatewayConfig:
        return dataclasses.replace(self, upstream_url=url)


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
        "HTTP admin address (/healthz, /readyz, webhooks), or 'off'",
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
    Setting("log_level", "GATEWAY_LOG_LEVEL", "--log-level", _choice(LOG_LEVELS), "log level"),
    Setting(
        "log_format",
        "GATEWAY_LOG_FORMAT",
        "--log-format",
        _choice(LOG_FORMATS),
        "json (one object a line) or text (for people)",
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
    config = GatewayConfig(**values)
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
    if config.max_message_bytes < 1024:
        problems.append("GATEWAY_MAX_MESSAGE_BYTES must be at least 1024")
    return problems
