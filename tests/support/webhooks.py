"""Webhook deliveries as the Gagiteck API signs them, for the tests of the admin endpoint."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson


def signed_delivery(
    secret: str, event_id: str, execution_id: str = "exec_x"
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an ``execution.completed`` delivery signed with ``secret``
    (``X-Webhook-Signature: sha256=`` and the hex HMAC-SHA256 of the body)."""
    body = orjson.dumps(
        {
            "id": event_id,
            "type": "execution.completed",
            "created_at": datetime.now(UTC).isoformat(),
            "data": {"id": execution_id},
        }
    )
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Webhook-Signature": signature, "Content-Type": "application/json"}
