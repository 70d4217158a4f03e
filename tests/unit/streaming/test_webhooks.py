"""Webhook verification: signature, time window, replay."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from gateway.streaming.webhooks import WebhookRejected, WebhookVerifier

SECRET = "whsec_test"
NOW = 1_705_314_600.0  # 2024-01-15T10:30:00Z


def _delivery(
    event_id: str = "evt_1", created_at: str = "2024-01-15T10:30:00.000001", secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(
        {
            "id": event_id,
            "type": "execution.completed",
            "created_at": created_at,
            "data": {"id": "exec_1"},
        }
    )
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Webhook-Signature": signature, "X-Webhook-ID": event_id}


def _verifier() -> WebhookVerifier:
    return WebhookVerifier(SECRET, tolerance=300, clock=lambda: NOW)


def test_good_delivery() -> None:
    event = _verifier().verify(*_delivery())
    assert (event.id, event.type, event.data["id"]) == ("evt_1", "execution.completed", "exec_1")


def test_bad_signature() -> None:
    body, headers = _delivery(secret="other")
    with pytest.raises(WebhookRejected) as caught:
        _verifier().verify(body, headers)
    assert caught.value.status == 401


def test_tampered_body() -> None:
    body, headers = _delivery()
    with pytest.raises(WebhookRejected):
        _verifier().verify(body.replace(b"exec_1", b"exec_2"), headers)


def test_missing_signature() -> None:
    body, _ = _delivery()
    with pytest.raises(WebhookRejected):
        _verifier().verify(body, {})


@pytest.mark.parametrize("created_at", ["2024-01-15T10:24:59", "2024-01-15T10:35:01Z"])
def test_outside_time_window(created_at: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        _verifier().verify(*_delivery(created_at=created_at))
    assert "tolerance" in caught.value.reason


def test_replay_rejected() -> None:
    verifier = _verifier()
    verifier.verify(*_delivery())
    with pytest.raises(WebhookRejected) as caught:
        verifier.verify(*_delivery())
    assert caught.value.status == 409
    verifier.verify(*_delivery(event_id="evt_2"))


def test_remembered_ids_are_bounded() -> None:
    clock = [NOW]
    verifier = WebhookVerifier(SECRET, tolerance=300, clock=lambda: clock[0], max_remembered=10)
    for i in range(50):
        verifier.verify(*_delivery(event_id=f"evt_{i}"))
    assert len(verifier._seen) <= 11
