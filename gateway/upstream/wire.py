"""What the unary HTTP/1.1 pool hands back: the answer, or why there is none.

    HttpClientError        a failed exchange (gateway/upstream/translate.py maps each)
     ├── ConnectFailed     no connection could be made: nothing was sent
     ├── ConnectionLost    closed or failed before the answer's headers were complete
     ├── BodyTruncated     closed in the middle of the body
     ├── ProtocolError     not a valid HTTP/1.1 answer, or over a limit
     ├── BodyTooLarge      the body is larger than the pool reads
     └── UnsafeRequest     a header value or the target holds CR, LF or NUL: not sent

Also here: decoding gzip and deflate bodies within the pool's size limit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

MAX_HEADER_BYTES: Final = 64 * 1024
"""Most bytes of status line and headers accepted in one answer."""
MAX_LINE_BYTES: Final = 8190
"""Most bytes of the status line or of one header field (aiohttp's limits too)."""
MAX_FIELDS: Final = 128
"""Most header fields accepted in one answer (aiohttp's limit too)."""
MAX_INTERIM_ANSWERS: Final = 16
"""Most interim (1xx) answers accepted before the final one. An API sends one at most (100
Continue, 103 Early Hints); a server that keeps sending them is out of step or stalling."""
MAX_GZIP_MEMBERS: Final = 16
"""Most gzip members one body may hold. A body of many members is legal but never sent
by an API; each member costs a copy of the rest of the body, so the count bounds the work
of decoding as ``max_body_bytes`` bounds its output."""
BAD_CHARACTERS: Final = frozenset("\r\n\x00")


class HttpClientError(Exception):
    """A failed exchange; ``message`` says what happened in words a caller can use."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectFailed(HttpClientError):
    """No connection could be made (refused, unreachable, name unknown, connect timeout):
    nothing of the request was sent."""


class ConnectionLost(HttpClientError):
    """The connection closed or failed before the answer's headers were complete."""

    def __init__(self, message: str, received: bool) -> None:
        super().__init__(message)
        self.received = received


class BodyTruncated(HttpClientError):
    """The connection closed in the middle of the answer's body."""


class ProtocolError(HttpClientError):
    """The bytes that arrived are not a valid HTTP/1.1 answer (or exceed a limit)."""


class BodyTooLarge(HttpClientError):
    """The answer's body is larger than the pool's ``max_body_bytes``."""


class UnsafeRequest(HttpClientError, ValueError):
    """A header value or the target holds CR, LF or NUL; nothing was sent."""


@dataclass(frozen=True, slots=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    """Names in lower case; repeated headers joined with ``, ``."""
    body: bytes


def check_header(name: str, value: str) -> None:
    """Refuse a header that could split the request (UnsafeRequest)."""
    if not BAD_CHARACTERS.isdisjoint(value) or not BAD_CHARACTERS.isdisjoint(name) or ":" in name:
        raise UnsafeRequest(f"the header {name!r} holds CR, LF or NUL")


def decoded_body(body: bytes, encoding: str, limit: int) -> bytes:
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wbits = zlib.MAX_WBITS if _zlib_header(body) else -zlib.MAX_WBITS
    else:
        raise ProtocolError(f"the upstream's answer uses an encoding it was not offered: {coding}")
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:  # a gzip body may hold several members, one after another (RFC 1952 2.2)
        if len(parts) == MAX_GZIP_MEMBERS:
            raise ProtocolError(
                f"the upstream's {coding} body holds more than {MAX_GZIP_MEMBERS} members"
            )
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise ProtocolError(
                f"the upstream's {coding} body does not decompress ({exc})"
            ) from exc
        size += len(part)
        if size > limit:
            raise BodyTooLarge(
                f"the upstream's answer exceeds the {limit}-byte limit once decompressed"
            )
        if not inflater.eof:
            raise ProtocolError(f"the upstream's {coding} body ends before its compressed stream")
        parts.append(part)
        rest = inflater.unused_data
        if not rest:
            break
        if coding == "deflate":
            # deflate is one stream (RFC 9110 8.4.1.2); bytes after it are refused rather
            # than dropped unread, whether garbage or a second stream
            raise ProtocolError(
                f"the upstream's deflate body holds {len(rest)} bytes after its stream"
            )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _zlib_header(body: bytes) -> bool:
    """Whether ``body`` starts with a zlib header (RFC 1950: method 8, check bits)."""
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
