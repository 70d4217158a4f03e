"""What the streaming stage is configured with: event-stream relays and watch pollers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSettings:
    idle_timeout: float = 60.0
    cancel_upstream: bool = True
    cancel_timeout: float = 5.0
    max_event_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WatchSettings:
    min_interval: float = 0.25
    max_interval: float = 5.0
    backoff: float = 1.5
    poll_timeout: float = 10.0
    max_transient_failures: int = 5
    longest_wait: float = 60.0
    """The longest a poller waits before polling again, whatever the upstream's
    Retry-After says (a watcher must not be left without news for a day)."""
