"""WebhookService: CRUD, the event vocabulary, and test deliveries."""

from __future__ import annotations

import secrets

from aiohttp import web

from ..clock import utcnow
from ..context import json_body, principal_of, state_of
from ..ids import new_id
from ..jsonio import json_response, list_query, list_response, no_content
from ..resources import Webhook
from ..validation import (
    Field,
    boolean,
    http_url,
    list_of,
    literal,
    nullable,
    string,
    validate_body,
)
from ..webhooks import ALL_EVENTS, TEST_EVENT

WEBHOOK = (
    Field("url", http_url(), required=True),
    Field("events", list_of(literal(*ALL_EVENTS)), required=True),
    Field("secret", nullable(string(min_length=1)), default=lambda: None),
    Field("description", nullable(string()), default=lambda: None),
    Field("active", boolean(), default=lambda: True),
)


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request)
    return list_response(
        state.store.webhooks.of(principal_of(request).account_id), query, state.render
    )


async def create_webhook(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), WEBHOOK)
    webhook = Webhook(
        new_id("wh"),
        principal_of(request).account_id,
        body["url"],
        list(dict.fromkeys(body["events"])),
        body["secret"] or "whsec_" + secrets.token_hex(16),
        body["description"],
        body["active"],
    )
    state.store.webhooks.add(webhook)
    state.created("webhook")
    return json_response(state.render(webhook), 201)


def _webhook(request: web.Request) -> Webhook:
    state = state_of(request)
    return state.store.webhooks.get(
        principal_of(request).account_id, request.match_info["webhook_id"]
    )


async def get_webhook(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(_webhook(request)))


async def update_webhook(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    changes = validate_body(await json_body(request), WEBHOOK, partial=True)
    webhook = _webhook(request)
    if changes.get("events") is not None:
        webhook.events = list(dict.fromkeys(changes["events"]))
    if changes.get("secret"):
        webhook.secret = changes["secret"]
    for name in ("url", "description", "active"):
        if name in changes:
            setattr(webhook, name, changes[name])
    webhook.updated_at = utcnow()
    return json_response(state.render(webhook))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.store.webhooks.remove(principal_of(request).account_id, request.match_info["webhook_id"])
    return no_content()


async def list_events(request: web.Request) -> web.StreamResponse:
    return json_response({"events": list(ALL_EVENTS)})


async def test_webhook(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    webhook = _webhook(request)
    data = {"webhook_id": webhook.id, "message": "This is a test event from Gagiteck"}
    delivery = await state.webhooks.deliver(webhook, TEST_EVENT, data)
    return json_response(state.render(delivery))
