"""The headers of the upstream requests made for a call: credential, ids, idempotency key.

Which credential goes upstream follows ``GATEWAY_AUTH_MODE`` (:class:`CredentialPolicy`):

* ``passthrough`` — the caller's ``authorization`` metadata, or none (the upstream answers 401);
* ``service`` — always the gateway's own key, whatever the caller sent;
* ``passthrough-or-service`` — the caller's when it sends one, else the gateway's.

The gateway never uses its own key unless one of the service modes says so. Every POST
carries an ``Idempotency-Key``: the caller's, or one made for the call (so that its retries
cannot create twice); a PATCH carries the caller's, if any. When the gateway's own key goes
upstream, the upstream keeps every caller's idempotency keys in one account: a caller's
key is then sent namespaced by its caller key (:func:`gateway.call.namespaced_idempotency_key`),
so that one caller's key can never replay another caller's stored answer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final, Literal

from gateway.call import CallerMetadata, namespaced_idempotency_key
from gateway.transcoding.passthrough import Passthrough

AuthMode = Literal["passthrough", "service", "passthrough-or-service"]
AUTH_MODES: Final = ("passthrough", "service", "passthrough-or-service")
JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    mode: AuthMode = "passthrough"
    service_key: str | None = field(default=None, repr=False)

    def shared(self, caller: str | None) -> bool:
        """Whether the gateway's own key goes upstream for a caller sending ``caller``."""
        return self.mode == "service" or (self.mode == "passthrough-or-service" and not caller)

    def authorization(self, caller: str | None) -> str | None:
        if self.mode == "passthrough":
            return caller
        service = f"Bearer {self.service_key}" if self.service_key else None
        if self.mode == "service":
            return service
        return caller or service


@dataclass(frozen=True, slots=True)
class UpstreamHeaders:
    """Builds the headers of a call's upstream requests (once per call; retries reuse them)."""

    credentials: CredentialPolicy = field(default_factory=CredentialPolicy)
    generate_idempotency_keys: bool = True
    passthrough: Passthrough = field(default_factory=Passthrough)

    def for_call(self, method: str, has_body: bool, caller: CallerMetadata) -> dict[str, str]:
        headers = {"X-Request-ID": caller.request_id}
        authorization = self.credentials.authorization(caller.authorization)
        if authorization:
            headers["Authorization"] = authorization
        if has_body:
            headers["Content-Type"] = JSON
        key = caller.idempotency_key
        if key is None:
            if method == "POST" and self.generate_idempotency_keys:
                key = uuid.uuid4().hex
        elif self.credentials.shared(caller.authorization):
            key = namespaced_idempotency_key(caller.caller, key)
        if key and method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = key
        if caller.forward:
            headers.update(caller.forward)
        return headers
