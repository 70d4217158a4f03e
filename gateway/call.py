"""What every stage knows about the call in progress: who called, and its trace handle.

* :class:`CallerMetadata` is read from the caller's metadata once, at the handler:
  request id, credential, idempotency key. Values are checked before anything is
  forwarded: a value with CR, LF or NUL could split an HTTP header upstream, so it is
  refused with INVALID_ARGUMENT (its content is never echoed). The request id is the
  caller's ``x-request-id`` when it is sane, or a new one.
* :class:`CallerKeys` names the caller: a salted digest of its credential (compared
  without the scheme's case or extra spaces), of its client certificate (mTLS), or of its
  address when it sent neither. The key chooses its rate-limit bucket and its share of
  open streams, and namespaces its idempotency keys when the gateway's own credential
  goes upstream. The salt is a secret the replicas share and Redis never holds.
* :func:`credential_digest` is the form in which a credential is kept in this process's
  memory (upstream windows and watch pollers are keyed by it): salted with a random
  value of this process.
* :class:`CallTrace` is the call's trace handle: what the upstream requests made for the
  call need to join its trace, and what they report back for its access line. Telemetry
  fills it in (:class:`gateway.telemetry.server.ServerCall`); with tracing off it carries
  only the caller's trace headers, passed on unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

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
    caller: str = ""
    """The caller's key (:class:`CallerKeys`); "" when the call's caller is not told apart."""
    forward: tuple[tuple[str, str], ...] = ()
    """Metadata the caller sent that GATEWAY_FORWARD_METADATA copies upstream."""


_ids = random.Random(int.from_bytes(os.urandom(16), "big"))
# A forked worker must not repeat its parent's sequence (GATEWAY_WORKERS forks).
os.register_at_fork(after_in_child=lambda: _ids.seed(int.from_bytes(os.urandom(16), "big")))


def new_request_id() -> str:
    """32 random hex digits, unique in practice; cheaper than uuid4 (no system call)."""
    return f"{_ids.getrandbits(128):032x}"


def read_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
    keys: CallerKeys | None = None,
    connection: Connection | None = None,
    forward: frozenset[str] = frozenset(),
) -> CallerMetadata:
    """The caller's metadata, checked; with ``keys``, its caller key too (``connection``
    tells the client certificate and the address, asked only when they are needed); the
    entries named in ``forward``, to be copied upstream."""
    request_id: str | None = None
    authorization: str | None = None
    idempotency_key: str | None = None
    forwarded: list[tuple[str, str]] = []
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
        elif key in forward:
            forwarded.append((key, value))
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
    authorization = authorization or None
    caller = "" if keys is None else keys.key(authorization, connection)
    return CallerMetadata(
        request_id or new_request_id(), authorization, idempotency_key, caller, tuple(forwarded)
    )


def _sane(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and all("!" <= ch <= "~" for ch in value)


def request_id_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's request id when it is usable, else a fresh one (for error replies)."""
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and _sane(value, MAX_REQUEST_ID):
            return value
    return new_request_id()


_PROCESS_SALT: Final = os.urandom(32)


@functools.lru_cache(maxsize=4096)
def credential_digest(credential: str) -> str:
    """A credential's HMAC-SHA256 (hex) under this process's random salt: the form in which
    it is kept in memory. Never for what other processes must agree on (that is
    :class:`CallerKeys`'s shared salt).

    Cached (a caller sends the same credential call after call); the cache lives in this
    process's memory only, next to the connections that carried the credentials anyway.
    """
    return hmac.new(_PROCESS_SALT, credential.encode(), hashlib.sha256).hexdigest()


def normalized_credential(authorization: str) -> str:
    """One spelling per credential: the scheme in lower case, single spaces (``BEARER  k``,
    ``bearer k`` and ``Bearer k`` are one caller; tokens keep their case)."""
    parts = authorization.split()
    if len(parts) < 2:
        return " ".join(parts)
    return " ".join([parts[0].lower(), *parts[1:]])


CallerSource = Literal["credential", "client-certificate"]
CALLER_SOURCES: Final = ("credential", "client-certificate")

Connection = Callable[[], tuple[str | None, str | None]]
"""Asked for a call's connection facts: (client certificate identity or None, peer address
or None)."""


class CallerKeys:
    """Tells callers apart, as salted digests (64 hex digits).

    A caller is, in order of preference, its credential (normalized) or — with
    ``prefer="client-certificate"`` — its verified client certificate first; then the
    other one; then its address (the host, without the port): callers who send neither a
    credential nor a certificate share a key per address, so they still have a bucket and
    a stream cap. ``salt`` must be the same in every replica sharing buckets in Redis or
    retrying each other's calls (see :func:`namespaced_idempotency_key`).
    """

    __slots__ = ("_cache", "_salt", "prefer")

    def __init__(self, salt: bytes, prefer: CallerSource = "credential") -> None:
        if len(salt) < 16:
            raise ValueError("the caller-key salt must be at least 16 bytes")
        self._salt = salt
        self.prefer = prefer
        self._cache: dict[str, str] = {}

    def key(self, authorization: str | None, connection: Connection | None = None) -> str:
        certificate, peer = (
            (None, None) if connection is None else _ask(connection, authorization, self.prefer)
        )
        if self.prefer == "client-certificate" and certificate:
            return self.digest(certificate)
        if authorization:
            return self.digest("credential:" + normalized_credential(authorization))
        if certificate:
            return self.digest(certificate)
        if peer:
            return self.digest("peer:" + _host_of(peer))
        return ""

    def digest(self, value: str) -> str:
        found = self._cache.get(value)
        if found is None:
            if len(self._cache) >= 4096:
                self._cache.clear()
            found = self._cache[value] = hmac.new(
                self._salt, value.encode(), hashlib.sha256
            ).hexdigest()
        return found


def _ask(
    connection: Connection, authorization: str | None, prefer: CallerSource
) -> tuple[str | None, str | None]:
    if authorization and prefer == "credential":
        return None, None  # the credential decides: the connection is not asked
    return connection()


def _host_of(peer: str) -> str:
    """``ipv4:10.0.0.7:51234`` → ``ipv4:10.0.0.7``; ``ipv6:[::1]:5`` → ``ipv6:[::1]``."""
    head, _, tail = peer.rpartition(":")
    return head if head and tail.isdigit() else peer


def namespaced_idempotency_key(caller: str, key: str) -> str:
    """The ``Idempotency-Key`` sent upstream for a caller's key when the gateway's own
    credential goes upstream: two callers' equal keys must not find each other's stored
    answer. Deterministic (the caller's retries, through any replica, send the same one)."""
    return hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()


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
