"""Webhooks in the deployed dialect.

The flag is `is_active`; `last_triggered_at` and `failure_count` are answered
but never change, because the service never sends a resource event (its
dispatcher exists but nothing calls it). An unknown event name is 400 after
the body has passed validation; on update the URL is already replaced when
that 400 comes (the service checks the events after setting the URL).

`POST /v1/webhooks/{id}/test` answers `{"message", "event_id"}` at once and
then delivers, in the background and whether or not the webhook is active, a
POST of `{"id", "type": "test", "timestamp", "data": {"message"}}` serialised
the way Python's `json.dumps` does, with `Content-Type`, `X-Webhook-Event`,
`X-Webhook-ID`, `X-Webhook-Timestamp`, and `X-Webhook-Signature: sha256=<hex>`
only when the webhook has a (non-empty) secret. As everywhere in the emulator,
only loopback URLs are contacted; the delivery is kept in `state.deliveries`.
"""

from __future__ import annotations

import json
from typing import Any

from ..clock import render_time, utcnow
from ..ids import new_id
from ..outbound import is_loopback, send
from ..resources import WebhookDelivery
from ..state import EmulatorState
from ..webhooks import EVENTS, NOT_ATTEMPTED, signature
from .data import SHARED, DeployedWebhook
from .operations import Call, bad_request, not_found

TEST_EVENT = "test"
TEST_MESSAGE = "This is a test webhook event"
CATEGORIES = ("agent", "workflow", "execution")


def _webhook(call: Call) -> DeployedWebhook:
    webhook = call.state.deployed.webhooks.get(call.path["webhook_id"])
    if webhook is None:
        raise not_found("Webhook")
    return webhook


def _unknown(events: list[str]) -> str | None:
    """The unknown names written as a Python set (`{'a', 'b'}`), or None."""
    unknown = sorted(set(events) - set(EVENTS))
    if not unknown:
        return None
    return "{" + ", ".join(repr(name) for name in unknown) + "}"


async def list_webhooks(call: Call) -> Any:
    state = call.state
    hooks = [hook.to_json(state.style) for hook in state.deployed.webhooks.values()]
    return {"data": hooks, "total": len(hooks)}


async def create_webhook(call: Call) -> Any:
    state, body = call.state, call.body
    unknown = _unknown(body["events"])
    if unknown is not None:
        raise bad_request(f"Invalid events: {unknown}. Valid events: {list(EVENTS)!r}")
    webhook = DeployedWebhook(
        new_id("wh"),
        body["url"],
        body["events"],
        body["secret"],
        body["description"],
        body["is_active"],
    )
    state.deployed.webhooks[webhook.id] = webhook
    state.created("webhook")
    return webhook.to_json(state.style)


async def list_webhook_events(call: Call) -> Any:
    return {
        "events": list(EVENTS),
        "categories": {
            category: [event for event in EVENTS if event.startswith(category + ".")]
            for category in CATEGORIES
        },
    }


async def get_webhook(call: Call) -> Any:
    return _webhook(call).to_json(call.state.style)


async def update_webhook(call: Call) -> Any:
    webhook, body = _webhook(call), call.body
    if body["url"] is not None:
        webhook.url = body["url"]
    if body["events"] is not None:
        unknown = _unknown(body["events"])
        if unknown is not None:
            raise bad_request(f"Invalid events: {unknown}")
        webhook.events = body["events"]
    for name in ("secret", "description", "is_active"):
        if body[name] is not None:
            setattr(webhook, name, body[name])
    webhook.updated_at = utcnow()
    return webhook.to_json(call.state.style)


async def delete_webhook(call: Call) -> Any:
    del call.state.deployed.webhooks[_webhook(call).id]


async def test_webhook(call: Call) -> Any:
    state = call.state
    webhook = _webhook(call)
    event_id = new_id("evt")
    state.background.spawn(deliver_test(state, webhook, event_id), name=f"test delivery {event_id}")
    return {"message": "Test webhook queued", "event_id": event_id}


def test_payload(event_id: str, timestamp: str) -> bytes:
    """The test event as the service serialises it (`json.dumps`: `", "` and `": "`)."""
    event = {
        "id": event_id,
        "type": TEST_EVENT,
        "timestamp": timestamp,
        "data": {"message": TEST_MESSAGE},
    }
    return json.dumps(event).encode()


async def deliver_test(state: EmulatorState, webhook: DeployedWebhook, event_id: str) -> None:
    timestamp = render_time(utcnow(), state.style) or ""
    body = test_payload(event_id, timestamp)
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Event": TEST_EVENT,
        "X-Webhook-ID": event_id,
        "X-Webhook-Timestamp": timestamp,
    }
    if webhook.secret:
        headers["X-Webhook-Signature"] = signature(body, webhook.secret)
    delivery = WebhookDelivery(
        new_id("dlv"),
        SHARED,
        webhook.id,
        TEST_EVENT,
        event_id,
        webhook.url,
        attempted=False,
        payload=body,
        headers=headers,
    )
    session = state.session
    if session is None or not is_loopback(webhook.url):
        delivery.error = NOT_ATTEMPTED
    else:
        delivery.attempted = True
        timeout = state.config.outbound_timeout_seconds
        result = await send(session, "POST", webhook.url, body, headers, timeout)
        delivery.status_code = result.status
        delivery.duration_ms = result.duration_ms
        delivery.success = result.ok
        delivery.error = result.error or (
            None if result.ok else f"endpoint answered {result.status}"
        )
        delivery.delivered_at = utcnow()
    state.deliveries.append(delivery)
    state.stats.webhook_deliveries += 1
