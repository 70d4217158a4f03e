"""What tests can inspect afterwards: request counters and a log of recent requests.

The log keeps selected headers only, records whether an `Authorization`
header was present but never its value, and masks credential-like members
of JSON bodies.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

RECORDED_HEADERS = (
    "x-request-id",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "content-type",
    "user-agent",
    "accept",
)
SECRET_MEMBERS = frozenset({"password", "secret", "key", "access_token", "token", "api_key"})
MASK = "***"


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with credential-like members replaced by `***`."""
    if isinstance(value, dict):
        return {k: MASK if k in SECRET_MEMBERS else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    creations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    idempotent_replays: int = 0
    rate_limited: int = 0
    webhook_deliveries: int = 0

    @property
    def requests_total(self) -> int:
        return sum(self.requests.values())


class RequestLog:
    """The last N requests to the API (control routes excluded)."""

    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)

    def last(self, count: int) -> list[dict[str, Any]]:
        entries = list(self._entries)
        return entries[-count:] if count > 0 else []

    def clear(self) -> None:
        self._entries.clear()
