"""One request for the upstream, as the transcoding stage builds it and the clients send it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED_METHODS: Final = frozenset({"POST", "PATCH"})
"""Methods that become safe to repeat when an Idempotency-Key goes with them."""


def safe_to_repeat(method: str, has_idempotency_key: bool) -> bool:
    """Whether carrying out the request twice has the effect of carrying it out once."""
    method = method.upper()
    return method in IDEMPOTENT_METHODS or (has_idempotency_key and method in KEYED_METHODS)


@dataclass(slots=True)
class UpstreamRequest:
    """Method, path, query, body and headers of one upstream request.

    Built once per call and sent by each of its attempts unchanged (the clients copy the
    headers before adding the trace headers of an attempt). ``route`` is the route
    template (``GET /v1/agents/{agent_id}``): the name of the request in metrics, spans and
    errors, where ids never appear.
    """

    method: str
    path: str
    route: str
    headers: dict[str, str]
    query: list[tuple[str, str]] | None = None
    body: bytes | None = None

    @property
    def credential(self) -> str:
        """The ``Authorization`` the upstream sees ("" for none): its quotas count by it."""
        return self.headers.get("Authorization", "")

    @property
    def keyed(self) -> bool:
        """Whether it carries an Idempotency-Key (and so is safe to repeat)."""
        return "Idempotency-Key" in self.headers

    def target(self, base_path: str) -> str:
        """The request target: the base URL's path, the route's path, the query."""
        target = base_path + self.path
        if self.query:
            target += "?" + urlencode(self.query, quote_via=quote)
        return target
