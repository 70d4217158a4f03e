"""Frozen, validated configuration of the emulator and of its fault knobs.

Both objects are checked once, at construction; a bad value raises
`ConfigError` there rather than surfacing later as odd behaviour per request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

TimestampStyle = Literal["naive", "z"]
Dialect = Literal["reference", "deployed"]
DIALECTS: tuple[Dialect, ...] = ("reference", "deployed")
DropMode = Literal["before", "after"]
MalformedMode = Literal["html", "truncated"]

DEFAULT_MODEL = "claude-3-sonnet"
UNLIMITED_ADVERTISED = 1_000_000


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong kind."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_rate(value: float) -> bool:
    return isinstance(value, int | float) and 0.0 <= value <= 1.0


def _is_non_negative(value: float) -> bool:
    return isinstance(value, int | float) and value >= 0


@dataclass(frozen=True)
class Faults:
    """Failure injection for the `/v1/` routes; all off by default.

    Per matching request, the decisions are drawn in a fixed order from one
    `random.Random` (seeded by `seed` when given) so a run can be replayed.
    """

    latency_seconds: float = 0.0
    jitter_seconds: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    drop_rate: float = 0.0
    drop_mode: DropMode = "before"
    malformed_rate: float = 0.0
    malformed_mode: MalformedMode = "html"
    paths: str | None = None
    methods: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        _require(_is_non_negative(self.latency_seconds), "latency_seconds must be >= 0")
        _require(_is_non_negative(self.jitter_seconds), "jitter_seconds must be >= 0")
        for name in ("error_rate", "drop_rate", "malformed_rate"):
            _require(_is_rate(getattr(self, name)), f"{name} must be between 0 and 1")
        _require(
            isinstance(self.error_status, int) and 400 <= self.error_status <= 599,
            "error_status must be an HTTP error status (400-599)",
        )
        _require(self.drop_mode in ("before", "after"), "drop_mode must be 'before' or 'after'")
        _require(
            self.malformed_mode in ("html", "truncated"),
            "malformed_mode must be 'html' or 'truncated'",
        )
        self._check_paths()
        object.__setattr__(self, "methods", tuple(m.upper() for m in self.methods))
        _require(self.seed is None or isinstance(self.seed, int), "seed must be an integer")

    def _check_paths(self) -> None:
        if self.paths is None:
            return
        try:
            re.compile(self.paths)
        except re.error as exc:
            raise ConfigError(f"paths is not a valid regular expression: {exc}") from exc

    @property
    def active(self) -> bool:
        """True when at least one knob can change an answer."""
        rates = self.error_rate or self.drop_rate or self.malformed_rate
        return bool(rates or self.latency_seconds or self.jitter_seconds)

    def applies_to(self, method: str, path: str) -> bool:
        """Whether a request is subject to these faults (the path and method filters)."""
        if self.methods and method.upper() not in self.methods:
            return False
        return self.paths is None or re.search(self.paths, path) is not None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods)
        return data

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _check_api_keys(keys: tuple[str, ...]) -> None:
    for key in keys:
        _require(
            isinstance(key, str) and key.startswith("ggt_") and len(key) > len("ggt_"),
            "api_keys must start with 'ggt_'",
        )


def _check_optional_positive(value: int | None, name: str) -> None:
    _require(value is None or (isinstance(value, int) and value >= 1), f"{name} must be >= 1")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator can be told at start-up."""

    open_mode: bool = False
    api_keys: tuple[str, ...] = ()
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    jwt_ttl_seconds: int = 86_400
    demo_email: str = "demo@gagiteck.local"
    demo_password: str = field(default="demo-password", repr=False)
    demo_name: str = "Demo User"
    rate_limit_per_window: int | None = None
    rate_window_seconds: float = 60.0
    concurrency_limit: int | None = None
    step_delay_seconds: float = 0.05
    stream_delay_seconds: float = 0.02
    heartbeat_seconds: float = 15.0
    timestamp_style: TimestampStyle = "naive"
    outbound_timeout_seconds: float = 5.0
    request_log_size: int = 500
    max_body_bytes: int = 1024 * 1024
    """The largest request body accepted (the embedded emulator takes the gateway's)."""
    faults: Faults = field(default_factory=Faults)
    dialect: Dialect = "reference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        _check_api_keys(self.api_keys)
        _require(len(self.jwt_secret) >= 16, "jwt_secret must have at least 16 characters")
        _require(self.jwt_ttl_seconds >= 1, "jwt_ttl_seconds must be >= 1")
        _require(len(self.demo_password) >= 8, "demo_password must have at least 8 characters")
        _check_optional_positive(self.rate_limit_per_window, "rate_limit_per_window")
        _check_optional_positive(self.concurrency_limit, "concurrency_limit")
        _require(self.rate_window_seconds > 0, "rate_window_seconds must be > 0")
        for name in ("step_delay_seconds", "stream_delay_seconds", "outbound_timeout_seconds"):
            _require(_is_non_negative(getattr(self, name)), f"{name} must be >= 0")
        _require(self.heartbeat_seconds > 0, "heartbeat_seconds must be > 0")
        _require(self.timestamp_style in ("naive", "z"), "timestamp_style must be 'naive' or 'z'")
        _require(self.request_log_size >= 1, "request_log_size must be >= 1")
        _require(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        _require(isinstance(self.faults, Faults), "faults must be a Faults instance")
        _require(self.dialect in DIALECTS, "dialect must be 'reference' or 'deployed'")

    @property
    def advertised_limit(self) -> int:
        """The `X-RateLimit-Limit` value; a large number when unlimited."""
        return self.rate_limit_per_window or UNLIMITED_ADVERTISED
