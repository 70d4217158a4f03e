"""Verifying the upstream's webhook deliveries before they may wake anything.

A delivery is trusted when all of these hold:

* ``X-Webhook-Signature`` is ``sha256=`` and the hex HMAC-SHA256 of the raw body keyed
  with the shared secret, compared in constant time;
* its time — the body's ``created_at`` (the reference's envelope) or ``timestamp`` (the
  deployed service's) — is within the tolerance window of the gateway's clock;
* its event id — the body's ``id`` — was not seen before within the window.

Only what the signature covers is believed: the ``X-Webhook-ID`` and
``X-Webhook-Timestamp`` headers are not signed, so a body without its own id or time is
refused (400), and an ``X-Webhook-ID`` that disagrees with the body's id is refused too.
A captured delivery sent again, whatever headers it carries, has the same signed id and is
refused as a replay (409).

The ids seen are remembered by a :class:`ReplayGuard` for the tolerance window (older
deliveries fail the time check anyway): :class:`LocalReplays` in this process, or
:class:`RedisReplays` — one ``SET NX`` per delivery — so that every worker and replica
behind the same Redis refuses a delivery any of them accepted. When Redis cannot be
reached the delivery is answered 503: the sender delivers it again later, and nothing is
acted on twice.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.transcoding.json_values import parse_timestamp

TIME_MEMBERS: Final = ("created_at", "timestamp")
"""The body's members that may carry the event's time, in the order they are read."""


class WebhookRejected(Exception):
    """A delivery that must not be acted on; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: str
    type: str
    data: Mapping[str, Any]


class ReplayGuard(Protocol):
    async def first_time(self, event_id: str, now: float, window: float) -> bool:
        """Remember ``event_id`` for ``window`` seconds; False when it was already seen.
        Raises WebhookRejected(503) when it cannot tell."""
        ...


@dataclass
class LocalReplays:
    """Event ids seen by this process, oldest first, at most ``max_remembered``."""

    max_remembered: int = 100_000
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    async def first_time(self, event_id: str, now: float, window: float) -> bool:
        seen = self._seen
        while seen and (
            next(iter(seen.values())) < now - window or len(seen) >= self.max_remembered
        ):
            seen.popitem(last=False)
        if event_id in seen:
            return False
        seen[event_id] = now
        return True

    def __len__(self) -> int:
        return len(self._seen)


class RedisReplays:
    """Event ids seen by any process sharing the Redis (keys expire with the window)."""

    def __init__(self, client: Redis, namespace: str = "gagiteck-gateway") -> None:
        self.client = client
        self.prefix = f"{namespace}:webhook:"

    async def first_time(self, event_id: str, now: float, window: float) -> bool:
        digest = hashlib.sha256(event_id.encode()).hexdigest()
        try:
            created = await self.client.set(
                self.prefix + digest, b"1", nx=True, px=max(int(window * 1000), 1)
            )
        except (RedisError, OSError, TimeoutError):
            raise WebhookRejected(503, "the replay check is unavailable; deliver again") from None
        return bool(created)

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass
class WebhookVerifier:
    secret: str = field(repr=False)
    tolerance: float = 300.0
    clock: Callable[[], float] = time.time
    replays: ReplayGuard = field(default_factory=LocalReplays)

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = headers.get("X-Webhook-Signature", "")
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise WebhookRejected(401, "bad or missing signature")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise WebhookRejected(400, "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "the body is not a JSON object")
        event_id = payload.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookRejected(400, "the signed body has no event id")
        header_id = headers.get("X-Webhook-ID")
        if header_id is not None and header_id != event_id:
            raise WebhookRejected(400, "X-Webhook-ID differs from the signed body's id")
        now = self.clock()
        sent = parse_timestamp(_signed_time(payload))
        if sent is None:
            raise WebhookRejected(400, "the signed body has no readable time")
        if abs(now - (sent.seconds + sent.nanos / 1e9)) > self.tolerance:
            raise WebhookRejected(400, "timestamp outside the tolerance window")
        if not await self.replays.first_time(event_id, now, 2 * self.tolerance):
            raise WebhookRejected(409, "event id already received (replay)")
        data = payload.get("data")
        kind = payload.get("type")
        return WebhookEvent(
            event_id, kind if isinstance(kind, str) else "", data if isinstance(data, dict) else {}
        )


def _signed_time(payload: Mapping[str, Any]) -> Any:
    for name in TIME_MEMBERS:
        value = payload.get(name)
        if value:
            return value
    return None
