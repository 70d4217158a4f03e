"""`Idempotency-Key` bookkeeping: one execution per (account, key).

The first request with a key runs; while it runs, another with the same key
is a conflict; once it has answered, the same key with the same request
replays the stored answer and with a different request is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import ApiError, conflict


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    content_type: str | None


@dataclass
class _Entry:
    fingerprint: str
    answer: StoredAnswer | None = None


def fingerprint(method: str, path: str, body: Any, raw: bytes) -> str:
    """A digest of what makes two requests "the same": verb, path and JSON body."""
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        canonical = raw
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class IdempotencyStore:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}

    def begin(self, scope: str, key: str, digest: str) -> StoredAnswer | None:
        """None: go ahead and execute. An answer: replay it. Raises on misuse."""
        entry = self._entries.get((scope, key))
        if entry is None:
            self._entries[(scope, key)] = _Entry(digest)
            return None
        if entry.fingerprint != digest:
            raise ApiError(
                422,
                "Idempotency-Key was already used with a different request",
                "IDEMPOTENCY_KEY_REUSED",
            )
        if entry.answer is None:
            raise conflict("A request with this Idempotency-Key is still in progress")
        return entry.answer

    def complete(self, scope: str, key: str, answer: StoredAnswer) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None:
            entry.answer = answer

    def abandon(self, scope: str, key: str) -> None:
        """Forget a key whose request did not produce a storable answer."""
        self._entries.pop((scope, key), None)

    def clear(self) -> None:
        self._entries.clear()
