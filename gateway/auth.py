"""Which credential goes upstream, per ``GATEWAY_AUTH_MODE``.

* ``passthrough`` — the caller's ``authorization`` metadata, or none (the upstream answers 401);
* ``service`` — always the gateway's own key, whatever the caller sent;
* ``passthrough-or-service`` — the caller's when it sends one, else the gateway's.

The gateway never uses its own key unless one of the service modes says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import AuthMode


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    mode: AuthMode = "passthrough"
    service_key: str | None = field(default=None, repr=False)

    def authorization(self, caller: str | None) -> str | None:
        if self.mode == "passthrough":
            return caller
        service = f"Bearer {self.service_key}" if self.service_key else None
        if self.mode == "service":
            return service
        return caller or service
