"""Deployed dialect: webhooks (`is_active`, unchanging delivery stats), the test delivery as
the service sends it, and no resource events at all."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import orjson
import pytest

from gateway.emulator import RunningEmulator

from .deployed_testkit import assert_answer, detail
from .emulator_testkit import Api, Receiver, wait_for

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
]


async def _webhook(dapi: Api, **body: object) -> dict[str, object]:
    reply = await dapi.post("/v1/webhooks", {"url": "http://example.com", "events": [], **body})
    assert reply.status == 201, reply.body
    webhook: dict[str, object] = assert_answer(reply, "POST", "/v1/webhooks")
    return webhook


@pytest.mark.asyncio
async def test_create_answers_the_deployed_webhook(dapi: Api) -> None:
    webhook = await _webhook(
        dapi,
        url="http://Example.COM",
        events=["agent.created", "agent.created"],
        secret="s3cret",
        active=False,
    )
    assert webhook["url"] == "http://example.com/"
    assert webhook["events"] == ["agent.created", "agent.created"]
    assert (webhook["is_active"], webhook["last_triggered_at"], webhook["failure_count"]) == (
        True,
        None,
        0,
    )
    assert "secret" not in webhook
    inactive = await _webhook(dapi, url="https://user:pw@EXAMPLE.com:443/a b", is_active="no")
    assert (inactive["url"], inactive["is_active"]) == ("https://user:pw@example.com/a%20b", False)


@pytest.mark.asyncio
async def test_unknown_events_are_400_after_validation(dapi: Api) -> None:
    reply = await dapi.post(
        "/v1/webhooks", {"url": "http://example.com", "events": ["foo", "agent.created"]}
    )
    assert detail(reply, 400) == f"Invalid events: {{'foo'}}. Valid events: {EVENTS!r}"
    invalid = await dapi.post("/v1/webhooks", {"url": "ftp://x", "events": ["foo"]})
    assert [i["type"] for i in invalid.body["detail"]] == ["url_scheme"]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("not a url", "url_parsing"),
        ("", "url_parsing"),
        ("http://x" + "a" * 2100 + ".com", "url_too_long"),
        (5, "url_type"),
    ],
)
@pytest.mark.asyncio
async def test_url_validation(dapi: Api, url: object, kind: str) -> None:
    reply = await dapi.post("/v1/webhooks", {"url": url, "events": []})
    assert reply.status == 422
    assert reply.body["detail"][0]["type"] == kind


@pytest.mark.asyncio
async def test_list_is_data_and_total_without_paging(dapi: Api) -> None:
    first = await _webhook(dapi)
    second = await _webhook(dapi, description="two")
    reply = await dapi.get("/v1/webhooks?limit=0&offset=-1")
    listed = assert_answer(reply, "GET", "/v1/webhooks")
    assert listed == {"data": [first, second], "total": 2}


@pytest.mark.asyncio
async def test_the_event_list(dapi: Api) -> None:
    reply = await dapi.get("/v1/webhooks/events")
    assert assert_answer(reply, "GET", "/v1/webhooks/events") == {
        "events": EVENTS,
        "categories": {
            "agent": EVENTS[0:3],
            "workflow": EVENTS[3:6],
            "execution": EVENTS[6:10],
        },
    }


@pytest.mark.asyncio
async def test_update_sets_the_url_before_refusing_events(dapi: Api) -> None:
    webhook = await _webhook(dapi, events=["agent.created"])
    path = f"/v1/webhooks/{webhook['id']}"
    refused = await dapi.patch(path, {"url": "http://changed.example", "events": ["bad"]})
    assert detail(refused, 400) == "Invalid events: {'bad'}"
    after = (await dapi.get(path)).body
    assert (after["url"], after["events"]) == ("http://changed.example/", ["agent.created"])
    assert after["updated_at"] == webhook["updated_at"]
    reply = await dapi.patch(path, {"is_active": False, "description": "x", "events": None})
    updated = assert_answer(reply, "PATCH", "/v1/webhooks/{webhook_id}")
    assert (updated["is_active"], updated["description"]) == (False, "x")
    assert updated["events"] == ["agent.created"]
    assert detail(await dapi.patch("/v1/webhooks/wh_nope", {}), 404) == "Webhook not found"


@pytest.mark.asyncio
async def test_get_and_delete(dapi: Api) -> None:
    webhook = await _webhook(dapi)
    got = await dapi.get(f"/v1/webhooks/{webhook['id']}")
    assert assert_answer(got, "GET", "/v1/webhooks/{webhook_id}") == webhook
    deleted = await dapi.delete(f"/v1/webhooks/{webhook['id']}")
    assert (deleted.status, deleted.raw) == (204, b"")
    assert detail(await dapi.get(f"/v1/webhooks/{webhook['id']}"), 404) == "Webhook not found"


@pytest.mark.asyncio
async def test_the_test_delivery_is_signed_and_typed_test(
    dapi: Api, receiver: Receiver, deployed: RunningEmulator
) -> None:
    webhook = await _webhook(dapi, url=receiver.url, secret="topsecret", is_active=False)
    reply = await dapi.post(f"/v1/webhooks/{webhook['id']}/test", {"ignored": True})
    answer = assert_answer(reply, "POST", "/v1/webhooks/{webhook_id}/test")
    assert set(answer) == {"message", "event_id"}
    assert answer["message"] == "Test webhook queued"
    await asyncio.wait_for(receiver.arrived.wait(), 3)
    received = receiver.received[0]
    payload = orjson.loads(received.raw)
    assert payload == {
        "id": answer["event_id"],
        "type": "test",
        "timestamp": payload["timestamp"],
        "data": {"message": "This is a test webhook event"},
    }
    assert received.raw.decode() == (
        f'{{"id": "{answer["event_id"]}", "type": "test", "timestamp": '
        f'"{payload["timestamp"]}", "data": {{"message": "This is a test webhook event"}}}}'
    )
    expected = hmac.new(b"topsecret", received.raw, hashlib.sha256).hexdigest()
    assert received.headers["X-Webhook-Signature"] == f"sha256={expected}"
    assert received.headers["X-Webhook-Event"] == "test"
    assert received.headers["X-Webhook-ID"] == answer["event_id"]
    assert received.headers["X-Webhook-Timestamp"] == payload["timestamp"]
    await deployed.state.drain()
    [delivery] = deployed.state.deliveries
    assert (delivery.event, delivery.success, delivery.status_code) == ("test", True, 200)


@pytest.mark.asyncio
async def test_without_a_secret_the_delivery_is_unsigned_and_failures_are_not_counted(
    dapi: Api, receiver: Receiver, deployed: RunningEmulator
) -> None:
    receiver.status = 500
    webhook = await _webhook(dapi, url=receiver.url, secret="")
    await dapi.post(f"/v1/webhooks/{webhook['id']}/test")
    await asyncio.wait_for(receiver.arrived.wait(), 3)
    assert "X-Webhook-Signature" not in receiver.received[0].headers
    await deployed.state.drain()
    assert deployed.state.deliveries[0].success is False
    after = (await dapi.get(f"/v1/webhooks/{webhook['id']}")).body
    assert (after["failure_count"], after["last_triggered_at"]) == (0, None)
    missing = await dapi.post("/v1/webhooks/wh_nope/test")
    assert detail(missing, 404) == "Webhook not found"


@pytest.mark.asyncio
async def test_resource_events_are_never_sent(
    dapi: Api, receiver: Receiver, deployed: RunningEmulator
) -> None:
    await _webhook(dapi, url=receiver.url, events=EVENTS)
    agent = (await dapi.post("/v1/agents", {"name": "a"})).body
    await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": "hi"})
    workflow = (await dapi.post("/v1/workflows", {"name": "w"})).body
    await dapi.post(f"/v1/workflows/{workflow['id']}/trigger", {})
    await dapi.delete(f"/v1/agents/{agent['id']}")
    await deployed.state.drain()
    await asyncio.sleep(0.05)
    assert receiver.received == []
    assert deployed.state.deliveries == []


@pytest.mark.asyncio
async def test_a_remote_url_is_not_contacted(dapi: Api, deployed: RunningEmulator) -> None:
    webhook = await _webhook(dapi, url="https://hooks.example.com/x")
    await dapi.post(f"/v1/webhooks/{webhook['id']}/test")

    async def recorded() -> bool:
        return bool(deployed.state.deliveries)

    await wait_for(recorded)
    delivery = deployed.state.deliveries[0]
    assert (delivery.attempted, delivery.success) == (False, False)
