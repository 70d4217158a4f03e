"""Headers a team chooses to pass: caller metadata to the upstream, answer headers back.

``GATEWAY_FORWARD_METADATA`` names caller metadata copied onto every upstream request of
the call (unary calls, streams, watch polls); ``GATEWAY_RETURN_HEADERS`` names upstream
answer headers copied into the call's response (header) metadata (unary calls and
streams; a watch's polls are shared between watchers, so none are returned). Names are
checked once at start by :func:`name_problems`:

* a valid lower-case header name, not ``grpc-*`` (gRPC's own);
* never a hop-by-hop header or one whose meaning is the connection's (``connection``,
  ``transfer-encoding``, ``content-length``, ``host``, …);
* never a header the gateway writes itself (``authorization``, ``x-request-id``,
  ``idempotency-key``, the trace context, ``content-type``, ``accept``);
* a credential-bearing header (``cookie``, ``set-cookie``, ``x-api-key``,
  ``proxy-authorization``) only when also listed in ``GATEWAY_ALLOW_SENSITIVE_HEADERS``.

Values are checked per call as all metadata is: CR, LF or NUL is refused before anything
is sent. An answer header whose value is not printable ASCII is not returned (gRPC
metadata could not carry it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "expect",
    }
)
"""Headers about the connection or the message's framing, never the call's."""

GATEWAY_OWNED: Final = frozenset(
    {
        "authorization",
        "x-request-id",
        "idempotency-key",
        "traceparent",
        "tracestate",
        "baggage",
        "content-type",
        "accept",
        "accept-encoding",
        "user-agent",
    }
)
"""Headers the gateway writes itself on upstream requests (or reads from answers)."""

SENSITIVE: Final = frozenset(
    {"cookie", "set-cookie", "proxy-authorization", "x-api-key", "www-authenticate"}
)
"""Headers that carry credentials: passed only when explicitly allowed."""

_NAME: Final = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


def name_problems(
    setting: str, names: Iterable[str], allowed_sensitive: Iterable[str]
) -> list[str]:
    """What is wrong with the header names of ``setting`` (nothing: an empty list)."""
    allowed = frozenset(allowed_sensitive)
    problems = []
    for name in names:
        if not _NAME.match(name):
            problems.append(f"{setting}: {name!r} is not a lower-case header name")
        elif name.startswith("grpc-") or name.endswith("-bin"):
            problems.append(f"{setting}: {name!r} belongs to gRPC")
        elif name in HOP_BY_HOP:
            problems.append(f"{setting}: {name!r} is about the connection, not the call")
        elif name in GATEWAY_OWNED:
            problems.append(f"{setting}: the gateway writes {name!r} itself")
        elif name in SENSITIVE and name not in allowed:
            problems.append(
                f"{setting}: {name!r} carries credentials; list it in "
                "GATEWAY_ALLOW_SENSITIVE_HEADERS too to pass it anyway"
            )
    return problems


@dataclass(frozen=True, slots=True)
class Passthrough:
    """The names passed each way (validated by :func:`name_problems` at start)."""

    forward: frozenset[str] = frozenset()
    returned: tuple[str, ...] = ()

    def returned_from(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The allowlisted headers of an answer (names in lower case), as metadata."""
        found = []
        for name in self.returned:
            value = headers.get(name)
            if value is not None and value.isascii() and value.isprintable():
                found.append((name, value))
        return found
