"""Webhook verification: signature, time window, replay — believing only the signed body."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from gateway.streaming.webhooks import LocalReplays, WebhookRejected, WebhookVerifier

SECRET = "whsec_test"
NOW = 1_705_314_600.0  # 2024-01-15T10:30:00Z
CREATED = "2024-01-15T10:30:00.000001"


def _signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Webhook-Signature": signature}


def _delivery(
    event_id: str = "evt_1", created_at: str = CREATED, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body, headers = _signed(
        {
            "id": event_id,
            "type": "execution.completed",
            "created_at": created_at,
            "data": {"id": "exec_1"},
        },
        secret,
    )
    return body, {**headers, "X-Webhook-ID": event_id}


def _verifier(**more: Any) -> WebhookVerifier:
    return WebhookVerifier(SECRET, tolerance=300, clock=lambda: NOW, **more)


async def _rejected(verifier: WebhookVerifier, body: bytes, headers: dict[str, str]) -> int:
    with pytest.raises(WebhookRejected) as caught:
        await verifier.verify(body, headers)
    return caught.value.status


@pytest.mark.asyncio
async def test_good_delivery() -> None:
    event = await _verifier().verify(*_delivery())
    assert (event.id, event.type, event.data["id"]) == ("evt_1", "execution.completed", "exec_1")


@pytest.mark.asyncio
async def test_the_deployed_services_envelope_with_timestamp() -> None:
    body, headers = _signed(
        {"id": "evt_9", "type": "webhook.test", "timestamp": CREATED, "data": {"message": "m"}}
    )
    event = await _verifier().verify(body, headers)
    assert (event.id, event.type) == ("evt_9", "webhook.test")


@pytest.mark.asyncio
async def test_bad_signature() -> None:
    assert await _rejected(_verifier(), *_delivery(secret="other")) == 401


@pytest.mark.asyncio
async def test_tampered_body() -> None:
    body, headers = _delivery()
    assert await _rejected(_verifier(), body.replace(b"exec_1", b"exec_2"), headers) == 401


@pytest.mark.asyncio
async def test_missing_signature() -> None:
    body, _ = _delivery()
    assert await _rejected(_verifier(), body, {}) == 401


@pytest.mark.parametrize("created_at", ["2024-01-15T10:24:59", "2024-01-15T10:35:01Z"])
@pytest.mark.asyncio
async def test_outside_time_window(created_at: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await _verifier().verify(*_delivery(created_at=created_at))
    assert "tolerance" in caught.value.reason


@pytest.mark.asyncio
async def test_replay_rejected() -> None:
    verifier = _verifier()
    await verifier.verify(*_delivery())
    assert await _rejected(verifier, *_delivery()) == 409
    await verifier.verify(*_delivery(event_id="evt_2"))


@pytest.mark.asyncio
async def test_a_captured_delivery_sent_again_with_new_headers_is_a_replay() -> None:
    """Issue 12, item 7: the id came from the unsigned X-Webhook-ID, so a captured delivery
    resent with a new one was accepted every time."""
    verifier = _verifier()
    body, headers = _delivery()
    await verifier.verify(body, headers)
    for number in range(3):
        resent = {**headers, "X-Webhook-ID": f"evt_new_{number}"}
        assert await _rejected(verifier, body, resent) == 400  # the header lies
        without = {k: v for k, v in headers.items() if k != "X-Webhook-ID"}
        assert await _rejected(verifier, body, without) == 409  # the signed id: a replay


@pytest.mark.asyncio
async def test_unsigned_headers_never_stand_in_for_the_body() -> None:
    """Item 7: without an id or a time in the body, the unsigned headers were used."""
    no_id, headers = _signed({"type": "execution.completed", "created_at": CREATED, "data": {}})
    assert await _rejected(_verifier(), no_id, {**headers, "X-Webhook-ID": "evt_h"}) == 400
    no_time, headers = _signed({"id": "evt_t", "type": "execution.completed", "data": {}})
    timed = {**headers, "X-Webhook-Timestamp": CREATED}
    assert await _rejected(_verifier(), no_time, timed) == 400


@pytest.mark.asyncio
async def test_remembered_ids_are_bounded() -> None:
    replays = LocalReplays(max_remembered=10)
    verifier = _verifier(replays=replays)
    for i in range(50):
        await verifier.verify(*_delivery(event_id=f"evt_{i}"))
    assert len(replays) <= 10
