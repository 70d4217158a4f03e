"""What every stage knows about the call in progress: who called, and its trace handle.

* :class:`CallerMetadata` is read from the caller's metadata once, at the handler:
  request id, credential, idempotency key. Values are checked before anything is
  forwarded: a value with CR, LF or NUL could split an HTTP header upstream, so it is
  refused with INVALID_ARGUMENT (its content is never echoed). The request id is the
  caller's ``x-request-id`` when it is sane, or a new one.
* :func:`credential_digest` is the only form in which a credential is kept (rate-limit
  buckets, upstream windows, watch pollers are keyed by it).
* :class:`CallTrace` is the call's trace handle: what the upstream requests made for the
  call need to join its trace, and what they report back for its access line. Telemetry
  fills it in (:class:`gateway.telemetry.server.ServerCall`); with tracing off it carries
  only the caller's trace headers, passed on unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from gateway.error_body import FieldViolation
from gateway.errors import InvalidRequest

MAX_REQUEST_ID: Final = 128
MAX_IDEMPOTENCY_KEY: Final = 255
_BAD_CHARS: Final = frozenset("\r\n\x00")


@dataclass(frozen=True, slots=True)
class CallerMetadata:
    request_id: str
    authorization: str | None = None
    idempotency_key: str | None = None


_ids = random.Random(int.from_bytes(os.urandom(16), "big"))
# A forked worker must not repeat its parent's sequence (GATEWAY_WORKERS forks).
os.register_at_fork(after_in_child=lambda: _ids.seed(int.from_bytes(os.urandom(16), "big")))


def new_request_id() -> str:
    """32 random hex digits, unique in practice; cheaper than uuid4 (no system call)."""
    return f"{_ids.getrandbits(128):032x}"


def read_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> CallerMetadata:
    request_id: str | None = None
    authorization: str | None = None
    idempotency_key: str | None = None
    problems: list[FieldViolation] = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            continue  # -bin metadata is never forwarded
        if not _BAD_CHARS.isdisjoint(value):
            problems.append(
                FieldViolation(f"metadata.{key}", "must not contain CR, LF or NUL characters")
            )
            continue
        if key == "x-request-id":
            request_id = value.strip()
        elif key == "authorization":
            authorization = value.strip()
        elif key == "idempotency-key":
            idempotency_key = value.strip()
    if request_id is not None and not _sane(request_id, MAX_REQUEST_ID):
        problems.append(
            FieldViolation(
                "metadata.x-request-id",
                f"must be 1-{MAX_REQUEST_ID} visible ASCII characters without spaces",
            )
        )
    if idempotency_key is not None and not _sane(idempotency_key, MAX_IDEMPOTENCY_KEY):
        problems.append(
            FieldViolation(
                "metadata.idempotency-key",
                f"must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters without spaces",
            )
        )
    if problems:
        raise InvalidRequest(
            "invalid request metadata: "
            + "; ".join(f"{p.field} {p.description}" for p in problems),
            problems,
        )
    return CallerMetadata(request_id or new_request_id(), authorization or None, idempotency_key)


def _sane(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and all("!" <= ch <= "~" for ch in value)


def request_id_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's request id when it is usable, else a fresh one (for error replies)."""
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and _sane(value, MAX_REQUEST_ID):
            return value
    return new_request_id()


@functools.lru_cache(maxsize=4096)
def credential_digest(credential: str) -> str:
    """The SHA-256 of a credential in hex: the only form in which the gateway keeps one.

    Cached (a caller sends the same credential call after call); the cache lives in this
    process's memory only, next to the connections that carried the credentials anyway.
    """
    return hashlib.sha256(credential.encode()).hexdigest()


ROOT_CONTEXT: Final = Context()
"""The empty context: the parent of a call whose caller sent no trace."""


class CallTrace:
    """What the upstream requests made for one call (or one poller) need to join its trace.

    ``span_context`` is the gateway's own span (None with tracing off), ``context`` the OTel
    context holding it — set only when the span is recorded, since only then are child
    spans made — and ``parent`` what was extracted from the caller. ``forward`` holds the
    caller's trace headers: passed on unchanged with tracing off, and the source of the
    baggage with tracing on. ``attempts`` and ``upstream_status`` count what the upstream
    side did, for the access log; ``events`` is set by the SSE relay so the stream's client
    span can say how many events it carried.
    """

    __slots__ = (
        "attempts",
        "context",
        "events",
        "forward",
        "parent",
        "recording",
        "span_context",
        "upstream_status",
    )

    def __init__(self) -> None:
        self.span_context: SpanContext | None = None
        self.context: Context | None = None
        self.parent: Context = ROOT_CONTEXT
        self.recording = False
        self.forward: dict[str, str] | None = None
        self.attempts = 0
        self.upstream_status: int | None = None
        self.events = 0

    def detached(self) -> CallTrace:
        """A handle for work that outlives this call but belongs to its trace (pollers)."""
        copy = CallTrace()
        copy.span_context, copy.context, copy.parent = self.span_context, self.context, self.parent
        copy.recording, copy.forward = self.recording, self.forward
        return copy

    def annotate(self, key: str, value: str | bool | int | float) -> None:
        """Set an attribute on the gateway's own span, if there is one being recorded."""

    def event(self, name: str, attributes: Mapping[str, str | bool | int | float]) -> None:
        """Add an event (a limiter wait, a breaker decision) to the gateway's span, if any."""
