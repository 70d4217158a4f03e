"""The gateway's configuration: read once at the edge, frozen, and handed to each part.

:func:`load_config` reads the flags and ``GATEWAY_*`` variables of
:data:`~gateway.config.settings.SETTINGS` and the ``OTEL_*`` variables, reports every
problem at once, and returns a :class:`GatewayConfig`. The config builds each part's own
settings object (``traffic_settings()``, ``upstream_settings()``, …), so the server wires
parts together without repacking values.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.call import CallerKeys, CallerSource
from gateway.config.otel import load_telemetry
from gateway.config.parsers import (
    ConfigError,
    HostPort,
    check_ca_bundle,
    check_key_pair,
    read_pem,
)
from gateway.config.settings import SETTINGS
from gateway.streaming.settings import StreamSettings, WatchSettings
from gateway.telemetry.redaction import Redactor
from gateway.telemetry.settings import TelemetryConfig
from gateway.traffic.limits import CostTable, RateLimit
from gateway.traffic.retry import RetryPolicy
from gateway.traffic.settings import TrafficSettings
from gateway.transcoding.headers import AuthMode, CredentialPolicy, UpstreamHeaders
from gateway.transcoding.passthrough import Passthrough, name_problems
from gateway.upstream.settings import UpstreamSettings


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs to start; build it with :func:`load_config`."""

    listen: HostPort = HostPort("127.0.0.1", 50051)
    upstream_url: str | None = None
    auth_mode: AuthMode = "passthrough"
    upstream_api_key: str | None = field(default=None, repr=False)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    tls_reload_interval: float = 5.0
    allow_insecure_service_mode: bool = False
    upstream_ca: str | None = None
    upstream_concurrency: int = 64
    upstream_timeout: float = 30.0
    connect_timeout: float = 5.0
    max_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace: float = 10.0
    shutdown_delay: float = 1.0
    max_connection_age: float = 0.0
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
    caller_identity: CallerSource = "credential"
    caller_max_streams: int = 32
    digest_salt: str | None = field(default=None, repr=False)
    forward_metadata: tuple[str, ...] = ()
    return_headers: tuple[str, ...] = ()
    allow_sensitive_headers: tuple[str, ...] = ()
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
    check_upstream: str = "off"
    emulator_dialect: Literal["reference", "deployed"] = "reference"
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    @property
    def embedded_emulator(self) -> bool:
        return self.upstream_url is None

    # -- each part's own settings

    def upstream_settings(self, base_url: str, *, streams: bool = False) -> UpstreamSettings:
        """The unary pool to the REST API at ``base_url``, or (``streams``) the separate
        pool for event streams, so that they cannot starve unary calls."""
        return UpstreamSettings(
            base_url=base_url,
            pool_size=self.stream_concurrency if streams else self.upstream_concurrency,
            connect_timeout=self.connect_timeout,
            max_body_bytes=self.max_body_bytes,
            ca_file=self.upstream_ca,
        )

    @property
    def max_body_bytes(self) -> int:
        """Largest upstream body read: four times a message (JSON is larger than protobuf)."""
        return max(self.max_message_bytes * 4, 1 << 20)

    def traffic_settings(self) -> TrafficSettings:
        def limit(rps: float | None, burst: float | None) -> RateLimit | None:
            return None if rps is None else RateLimit(rps, burst if burst is not None else rps)

        return TrafficSettings(
            global_limit=limit(self.rate_limit_rps, self.rate_limit_burst),
            caller_limit=limit(self.caller_rate_limit_rps, self.caller_rate_limit_burst),
            costs=CostTable(overrides=dict(self.method_costs)),
            concurrency=self.upstream_concurrency,
            queue=self.upstream_queue,
            redis_url=self.redis_url,
            replicas=self.replicas,
            retry=RetryPolicy(
                max_attempts=self.retry_max_attempts, base=self.retry_base, cap=self.retry_cap
            ),
            retry_budget_ratio=self.retry_budget_ratio,
            breaker_failures=self.breaker_failures,
            breaker_open_seconds=self.breaker_open_seconds,
            caller_max_streams=self.caller_max_streams,
        )

    def caller_keys(self) -> CallerKeys:
        """Caller keys under the configured salt; without one, a salt derived from the
        gateway's own key (the replicas share it, Redis never sees it), else a random
        one for this start (load_config refuses that with shared buckets in Redis)."""
        if self.digest_salt:
            salt = hashlib.sha256(self.digest_salt.encode()).digest()
        elif self.upstream_api_key:
            salt = hmac.new(
                self.upstream_api_key.encode(), b"gagiteck-gateway caller keys", hashlib.sha256
            ).digest()
        else:
            salt = _START_SALT
        return CallerKeys(salt, self.caller_identity)

    def upstream_headers(self) -> UpstreamHeaders:
        return UpstreamHeaders(
            CredentialPolicy(self.auth_mode, self.upstream_api_key),
            self.idempotency_keys,
            Passthrough(frozenset(self.forward_metadata), self.return_headers),
        )

    def stream_settings(self) -> StreamSettings:
        return StreamSettings(
            idle_timeout=self.stream_idle_timeout,
            cancel_upstream=self.stream_cancel_upstream,
            max_event_bytes=self.max_message_bytes,
        )

    def watch_settings(self) -> WatchSettings:
        """With webhooks waking the watchers, polling backs off to a safety net."""
        return WatchSettings(
            min_interval=self.watch_min_interval,
            max_interval=(
                self.watch_safety_interval if self.webhook_secret else self.watch_max_interval
            ),
        )

    def redactor(self) -> Redactor:
        """Redacts the configured secrets wherever they would appear, and credential shapes."""
        return Redactor((self.upstream_api_key, self.webhook_secret, self.digest_salt))


_START_SALT: Final = os.urandom(32)
"""The caller-key salt of this start when none is configured (forked workers share it)."""


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


INTERNAL_VARIABLES: Final = frozenset({"GATEWAY_WORKER_INDEX"})
"""``GATEWAY_*`` variables the gateway sets for itself (a worker's number)."""


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``GATEWAY_*`` variable no setting reads, with the setting it
    most likely means: a misspelt variable would otherwise be ignored in silence."""
    known = {setting.env for setting in SETTINGS} | INTERNAL_VARIABLES
    warnings = []
    for name in sorted(env):
        if name.startswith("GATEWAY_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{name} is not a setting of the gateway and is ignored{hint}")
    return warnings


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
    if (
        config.webhook_secret
        and (config.workers > 1 or config.replicas > 1)
        and not config.redis_url
    ):
        problems.append(
            "GATEWAY_WEBHOOK_SECRET with several processes (GATEWAY_WORKERS or "
            "GATEWAY_REPLICAS above 1) needs GATEWAY_REDIS_URL: each process would otherwise "
            "keep its own record of the deliveries seen, and accept a replay another refused"
        )
    if config.workers > 1 and config.upstream_url is None:
        problems.append(
            "GATEWAY_WORKERS > 1 needs GATEWAY_UPSTREAM_URL: each worker would otherwise "
            "start an emulator of its own (run `gagiteck-gateway emulator` once instead)"
        )
    if config.workers > 1 and config.listen.port == 0:
        problems.append("GATEWAY_WORKERS > 1 needs a fixed port in GATEWAY_LISTEN, not 0")
    if config.max_message_bytes < 1024:
        problems.append("GATEWAY_MAX_MESSAGE_BYTES must be at least 1024")
    problems.extend(_tls_checks(config))
    problems.extend(_caller_checks(config))
    return problems


def _caller_checks(config: GatewayConfig) -> list[str]:
    problems = []
    if config.caller_identity == "client-certificate" and config.tls_client_ca is None:
        problems.append(
            "GATEWAY_CALLER_IDENTITY=client-certificate needs client certificates: set "
            "GATEWAY_TLS_CLIENT_CA (with GATEWAY_TLS_CERT and GATEWAY_TLS_KEY)"
        )
    if (
        config.redis_url
        and config.caller_rate_limit_rps is not None
        and not (config.digest_salt or config.upstream_api_key)
    ):
        problems.append(
            "per-caller buckets in Redis (GATEWAY_REDIS_URL with "
            "GATEWAY_CALLER_RATE_LIMIT_RPS) need a salt every replica shares and Redis does "
            "not hold: set GATEWAY_DIGEST_SALT to a secret of at least 16 characters"
        )
    if config.digest_salt is not None and len(config.digest_salt) < 16:
        problems.append("GATEWAY_DIGEST_SALT must be at least 16 characters")
    sensitive = config.allow_sensitive_headers
    problems += name_problems("GATEWAY_FORWARD_METADATA", config.forward_metadata, sensitive)
    problems += name_problems("GATEWAY_RETURN_HEADERS", config.return_headers, sensitive)
    return problems


def _tls_checks(config: GatewayConfig) -> list[str]:
    problems = []
    if (config.tls_cert is None) != (config.tls_key is None):
        problems.append("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both, or neither")
    elif config.tls_cert is not None and config.tls_key is not None:
        problems.extend(
            _failure(
                "GATEWAY_TLS_CERT, GATEWAY_TLS_KEY", check_key_pair, config.tls_cert, config.tls_key
            )
        )
    if config.tls_client_ca is not None:
        if config.tls_cert is None:
            problems.append(
                "GATEWAY_TLS_CLIENT_CA needs TLS on the listener: set GATEWAY_TLS_CERT and "
                "GATEWAY_TLS_KEY too"
            )
        problems.extend(_failure("GATEWAY_TLS_CLIENT_CA", _check_ca_file, config.tls_client_ca))
    if config.upstream_ca is not None:
        if not (config.upstream_url or "").startswith("https://"):
            problems.append("GATEWAY_UPSTREAM_CA applies only to an https:// GATEWAY_UPSTREAM_URL")
        problems.extend(_failure("GATEWAY_UPSTREAM_CA", _check_ca_file, config.upstream_ca))
    if (
        config.auth_mode != "passthrough"
        and config.tls_client_ca is None
        and not config.allow_insecure_service_mode
        and not _is_loopback(config.listen.host)
    ):
        problems.append(
            f"GATEWAY_AUTH_MODE={config.auth_mode} on {config.listen} without client "
            "certificates would let anyone who reaches the port spend the gateway's key: "
            "require client certificates (GATEWAY_TLS_CERT, GATEWAY_TLS_KEY and "
            "GATEWAY_TLS_CLIENT_CA), listen on loopback only, or, when something in front "
            "already authenticates callers, set GATEWAY_ALLOW_INSECURE_SERVICE_MODE=true"
        )
    return problems


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_ca_file(path: str) -> None:
    check_ca_bundle(read_pem(path), path)


def _failure(settings: str, check: Callable[..., None], *args: str) -> list[str]:
    """The problem ``check`` finds in the files of ``settings``, if any."""
    try:
        check(*args)
    except ValueError as exc:
        return [f"{settings}: {exc}"]
    return []
