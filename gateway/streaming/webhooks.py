"""Verifying the upstream's webhook deliveries before they may wake anything.

A delivery is trusted when all of these hold:

* ``X-Webhook-Signature`` is ``sha256=`` and the hex HMAC-SHA256 of the raw body keyed
  with the shared secret, compared in constant time;
* its time — the body's ``created_at``, which the signature covers, or else the
  ``X-Webhook-Timestamp`` header — is within the tolerance window of the gateway's clock;
* its event id (``X-Webhook-ID`` or the body's ``id``) was not seen before. Ids are
  remembered for the tolerance window; older deliveries fail the time check anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.transcoding.json_values import parse_timestamp


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


@dataclass
class WebhookVerifier:
    secret: str = field(repr=False)
    tolerance: float = 300.0
    clock: Callable[[], float] = time.time
    max_remembered: int = 100_000
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
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
        now = self.clock()
        sent = parse_timestamp(payload.get("created_at") or headers.get("X-Webhook-Timestamp"))
        if sent is None:
            raise WebhookRejected(400, "no readable timestamp")
        if abs(now - (sent.seconds + sent.nanos / 1e9)) > self.tolerance:
            raise WebhookRejected(400, "timestamp outside the tolerance window")
        event_id = headers.get("X-Webhook-ID") or payload.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookRejected(400, "no event id")
        self._forget_older_than(now - self.tolerance)
        if event_id in self._seen:
            raise WebhookRejected(409, "event id already received (replay)")
        self._seen[event_id] = now
        data = payload.get("data")
        kind = payload.get("type") or headers.get("X-Webhook-Event") or ""
        return WebhookEvent(event_id, str(kind), data if isinstance(data, dict) else {})

    def _forget_older_than(self, cutoff: float) -> None:
        seen = self._seen
        while seen and (next(iter(seen.values())) < cutoff or len(seen) > self.max_remembered):
            seen.popitem(last=False)
