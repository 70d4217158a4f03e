"""Webhook events: the vocabulary, signing, and asynchronous delivery.

A delivery is a POST of `{"id", "type", "created_at", "data"}` with the
`X-Webhook-*` headers; the signature is `sha256=` and the hex HMAC-SHA256 of
the raw body keyed with the webhook's secret. Only loopback URLs are
contacted; the others are recorded as not attempted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from .background import Background
from .clock import render_time, utcnow
from .config import TimestampStyle
from .ids import new_id
from .outbound import is_loopback, send
from .recording import Stats
from .resources import Webhook, WebhookDelivery
from .store import Store

EVENTS: tuple[str, ...] = (
    "agent.created",
    "agent.updated",
    "agent.deleted",
    "workflow.created",
    "workflow.updated",
    "workflow.deleted",
    "execution.started",
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
)
TEST_EVENT = "webhook.test"
ALL_EVENTS: tuple[str, ...] = (*EVENTS, TEST_EVENT)
NOT_ATTEMPTED = "not attempted: only loopback hosts are contacted by the emulator"


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def envelope(event: str, data: Any, style: TimestampStyle) -> tuple[str, str, bytes]:
    """The event id, its timestamp and the serialized body of an event."""
    event_id = new_id("evt")
    created = render_time(utcnow(), style) or ""
    body = orjson.dumps({"id": event_id, "type": event, "created_at": created, "data": data})
    return event_id, created, body


def delivery_headers(
    webhook: Webhook, event: str, event_id: str, created: str, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Gagiteck-Webhooks/1.0 (emulator)",
        "X-Webhook-Event": event,
        "X-Webhook-ID": event_id,
        "X-Webhook-Timestamp": created,
        "X-Webhook-Signature": signature(body, webhook.secret),
    }


class WebhookDispatcher:
    """Fans resource events out to subscribed webhooks and records every delivery."""

    def __init__(
        self,
        store: Store,
        stats: Stats,
        background: Background,
        style: TimestampStyle,
        timeout: float,
        session: Callable[[], aiohttp.ClientSession | None],
    ) -> None:
        self._store = store
        self._stats = stats
        self._background = background
        self._style = style
        self._timeout = timeout
        self._session = session
        self.deliveries: list[WebhookDelivery] = []
        self.closed = False

    def subscribers(self, account_id: str, event: str) -> list[Webhook]:
        hooks = reversed(self._store.webhooks.of(account_id))
        return [hook for hook in hooks if hook.active and event in hook.events]

    def emit(self, account_id: str, event: str, data: Any) -> None:
        """Schedule a delivery of `event` to every active subscriber (none once closed)."""
        if self.closed:
            return
        for hook in self.subscribers(account_id, event):
            self._background.spawn(self.deliver(hook, event, data), name=f"deliver {event}")

    async def deliver(self, webhook: Webhook, event: str, data: Any) -> WebhookDelivery:
        event_id, created, body = envelope(event, data, self._style)
        headers = delivery_headers(webhook, event, event_id, created, body)
        delivery = WebhookDelivery(
            new_id("dlv"),
            webhook.account_id,
            webhook.id,
            event,
            event_id,
            webhook.url,
            attempted=False,
            payload=body,
            headers=headers,
        )
        await self._attempt(delivery, body, headers)
        self.deliveries.append(delivery)
        self._stats.webhook_deliveries += 1
        return delivery

    async def _attempt(
        self, delivery: WebhookDelivery, body: bytes, headers: dict[str, str]
    ) -> None:
        session = self._session()
        if session is None or not is_loopback(delivery.url):
            delivery.error = NOT_ATTEMPTED
            return
        delivery.attempted = True
        result = await send(session, "POST", delivery.url, body, headers, self._timeout)
        delivery.status_code = result.status
        delivery.duration_ms = result.duration_ms
        delivery.success = result.ok
        delivery.error = result.error or (
            None if result.ok else f"endpoint answered {result.status}"
        )
        delivery.delivered_at = utcnow()
