"""Reading the caller's metadata: request id, credential, idempotency key.

Values are checked before anything is forwarded: a value with CR, LF or NUL could split
an HTTP header upstream, so it is refused with INVALID_ARGUMENT (its content is never
echoed). The request id is the caller's ``x-request-id`` when it is sane, or a new one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.errors import FieldViolation, InvalidRequest

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
