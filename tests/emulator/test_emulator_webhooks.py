"""Webhooks: CRUD, the event list, signed deliveries to a real receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import orjson
import pytest

from gateway.emulator import RunningEmulator

from .emulator_testkit import Api, Receiver, wait_execution

SECRET = "whsec_test_secret"
EVENTS = [
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
    "webhook.test",
]


def _signed(raw: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@pytest.mark.asyncio
async def test_event_list_wins_over_the_id_route(api: Api) -> None:
    reply = await api.get("/v1/webhooks/events")
    assert reply.status == 200
    assert reply.body == {"events": EVENTS}


@pytest.mark.asyncio
async def test_webhook_crud_never_returns_the_secret(api: Api) -> None:
    body = {
        "url": "https://example.com/hook",
        "events": ["agent.created"],
        "secret": SECRET,
        "description": "d",
    }
    created = await api.post("/v1/webhooks", body)
    assert created.status == 201
    hook = created.body
    assert set(hook) == {"id", "url", "events", "description", "active", "created_at", "updated_at"}
    assert hook["id"].startswith("wh_")
    assert hook["active"] is True
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).body == hook
    patched = (
        await api.patch(
            f"/v1/webhooks/{hook['id']}", {"active": False, "events": ["agent.deleted"]}
        )
    ).body
    assert (patched["active"], patched["events"], patched["url"]) == (
        False,
        ["agent.deleted"],
        body["url"],
    )
    assert (await api.get("/v1/webhooks")).body["total"] == 1
    assert (await api.delete(f"/v1/webhooks/{hook['id']}")).status == 204
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).status == 404


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"url": "not a url", "events": []}, ["body", "url"], "url_parsing"),
        ({"url": "ftp://example.com/x", "events": []}, ["body", "url"], "url_scheme"),
        (
            {"url": "https://example.com", "events": ["agent.exploded"]},
            ["body", "events", 0],
            "literal_error",
        ),
        ({"url": "https://example.com"}, ["body", "events"], "missing"),
    ],
    ids=["url", "scheme", "event", "missing-events"],
)
@pytest.mark.asyncio
async def test_invalid_webhooks_are_422(
    api: Api, body: dict[str, object], loc: list[object], kind: str
) -> None:
    reply = await api.post("/v1/webhooks", body)
    assert reply.status == 422
    assert reply.body["detail"][0]["loc"] == loc
    assert reply.body["detail"][0]["type"] == kind


@pytest.mark.asyncio
async def test_resource_events_are_delivered_signed(
    api: Api, receiver: Receiver, emulator: RunningEmulator
) -> None:
    events = ["agent.created", "agent.deleted"]
    hook = (
        await api.post("/v1/webhooks", {"url": receiver.url, "events": events, "secret": SECRET})
    ).body
    agent = (await api.post("/v1/agents", {"name": "watched"})).body
    await api.patch(f"/v1/agents/{agent['id']}", {"name": "renamed"})
    await api.delete(f"/v1/agents/{agent['id']}")
    assert await emulator.state.drain(3.0)
    assert [r.headers["X-Webhook-Event"] for r in receiver.received] == events
    first = receiver.received[0]
    assert first.headers["X-Webhook-Signature"] == _signed(first.raw, SECRET)
    payload = orjson.loads(first.raw)
    assert set(payload) == {"id", "type", "created_at", "data"}
    assert payload["type"] == "agent.created"
    assert payload["id"] == first.headers["X-Webhook-ID"]
    assert payload["id"].startswith("evt_")
    assert payload["created_at"] == first.headers["X-Webhook-Timestamp"]
    assert payload["data"] == agent
    deliveries = emulator.state.deliveries
    assert [d.webhook_id for d in deliveries] == [hook["id"], hook["id"]]
    assert all(d.success and d.attempted and d.status_code == 200 for d in deliveries)


@pytest.mark.asyncio
async def test_execution_events_follow_a_workflow(
    api: Api, receiver: Receiver, emulator: RunningEmulator
) -> None:
    events = ["execution.started", "execution.completed"]
    await api.post("/v1/webhooks", {"url": receiver.url, "events": events, "secret": SECRET})
    workflow = (await api.post("/v1/workflows", {"name": "w", "steps": []})).body
    execution = (await api.post(f"/v1/workflows/{workflow['id']}/trigger", {})).body
    await wait_execution(api, execution["id"])
    assert await emulator.state.drain(3.0)
    bodies = [orjson.loads(item.raw) for item in receiver.received]
    assert [body["type"] for body in bodies] == events
    assert bodies[1]["data"]["id"] == execution["id"]
    assert bodies[1]["data"]["status"] == "completed"


@pytest.mark.asyncio
async def test_inactive_or_unsubscribed_hooks_get_nothing(
    api: Api, receiver: Receiver, emulator: RunningEmulator
) -> None:
    await api.post(
        "/v1/webhooks", {"url": receiver.url, "events": ["agent.created"], "active": False}
    )
    await api.post("/v1/webhooks", {"url": receiver.url, "events": ["workflow.created"]})
    await api.post("/v1/agents", {"name": "quiet"})
    assert await emulator.state.drain(3.0)
    await asyncio.sleep(0.05)
    assert receiver.received == []


@pytest.mark.asyncio
async def test_test_webhook_answers_the_delivery(api: Api, receiver: Receiver) -> None:
    hook = (
        await api.post("/v1/webhooks", {"url": receiver.url, "events": [], "secret": SECRET})
    ).body
    reply = await api.post(f"/v1/webhooks/{hook['id']}/test", {})
    assert reply.status == 200
    delivery = reply.body
    assert set(delivery) == {
        "id",
        "webhook_id",
        "event",
        "success",
        "status_code",
        "duration_ms",
        "error",
        "delivered_at",
    }
    assert delivery["id"].startswith("dlv_")
    assert (delivery["event"], delivery["success"], delivery["status_code"]) == (
        "webhook.test",
        True,
        200,
    )
    received = receiver.received[0]
    assert received.headers["X-Webhook-Event"] == "webhook.test"
    assert received.headers["X-Webhook-Signature"] == _signed(received.raw, SECRET)


@pytest.mark.asyncio
async def test_failing_receiver_is_recorded(api: Api, receiver: Receiver) -> None:
    receiver.status = 500
    hook = (await api.post("/v1/webhooks", {"url": receiver.url, "events": []})).body
    delivery = (await api.post(f"/v1/webhooks/{hook['id']}/test")).body
    assert (delivery["success"], delivery["status_code"]) == (False, 500)
    assert delivery["error"] == "endpoint answered 500"


@pytest.mark.asyncio
async def test_remote_hosts_are_never_contacted(api: Api, emulator: RunningEmulator) -> None:
    hook = (
        await api.post("/v1/webhooks", {"url": "https://hooks.example.com/x", "events": []})
    ).body
    delivery = (await api.post(f"/v1/webhooks/{hook['id']}/test", {})).body
    assert delivery["success"] is False
    assert delivery["status_code"] is None
    assert delivery["error"].startswith("not attempted")
    assert emulator.state.deliveries[-1].attempted is False
    assert (await api.post("/v1/webhooks/wh_missing/test", {})).status == 404
