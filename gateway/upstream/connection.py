"""One keep-alive HTTP/1.1 connection of the unary pool: writes a request, parses its answer.

Parsing is httptools' (llhttp); what is written here is the bookkeeping around it: the
bounds on headers and body, interim (1xx) answers, bodies that run to the end of the
connection, and whether the connection may be reused. Exactly one request is in flight
on a connection; bytes that arrive when none is make the connection untrusted.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from gateway.upstream.wire import (
    MAX_FIELDS,
    MAX_HEADER_BYTES,
    MAX_LINE_BYTES,
    BodyTooLarge,
    BodyTruncated,
    ConnectionLost,
    HttpClientError,
    ProtocolError,
    RawAnswer,
    decoded_body,
)


class Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body_bytes: int) -> None:
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[RawAnswer] | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.header_bytes = 0
        self.status_bytes = 0
        self.fields = 0
        self.head_bytes = 0
        self.headers_done = False
        self.until_close = False
        self.received = False
        self.failure: HttpClientError | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._fail(self.failure or ProtocolError(f"malformed HTTP answer ({exc})"))
            return
        if not self.headers_done and self.waiter is not None:
            # the parser holds an unfinished status line or header in memory: bound it
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEADER_BYTES:
                self._fail(
                    ProtocolError(f"the upstream's answer headers exceed {MAX_HEADER_BYTES} bytes")
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.waiter is None or self.waiter.done():
            return
        if self.headers_done and self.until_close and exc is None:
            self.on_message_complete()  # the body ran to a clean end of the connection
        elif self.headers_done:
            self._fail(BodyTruncated("the upstream's answer was cut off before its end"))
        else:
            detail = f" ({exc})" if exc is not None else ""
            self._fail(
                ConnectionLost(
                    "the upstream closed the connection without answering" + detail,
                    received=self.received,
                )
            )

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer in the bytes of the first: nobody asked
            raise ProtocolError("the upstream sent an answer nobody asked for")

    def on_status(self, reason: bytes) -> None:
        self.status_bytes += len(reason)  # the reason phrase may come in pieces
        if self.status_bytes + 13 > MAX_LINE_BYTES:  # "HTTP/1.1 200 " and the reason
            self._refuse(f"the upstream's status line exceeds {MAX_LINE_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return  # a trailer field of a chunked answer: never merged into the headers
        size = len(name) + len(value) + 4
        self.header_bytes += size
        self.fields += 1
        if self.header_bytes > MAX_HEADER_BYTES:
            self._refuse(f"the upstream's answer headers exceed {MAX_HEADER_BYTES} bytes")
        if size - 2 > MAX_LINE_BYTES:
            self._refuse(f"an upstream header field exceeds {MAX_LINE_BYTES} bytes")
        if self.fields > MAX_FIELDS:
            self._refuse(f"the upstream's answer has more than {MAX_FIELDS} header fields")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_done = True
        headers = self.headers
        length = headers.get("content-length")
        limit = self.max_body_bytes
        if length is not None:
            if length.isdigit() and int(length) > limit:
                self.failure = BodyTooLarge(
                    f"the upstream's answer is {length} bytes, over the {limit}-byte limit"
                )
                raise self.failure
        elif "chunked" not in headers.get("transfer-encoding", ""):
            status = self.parser.get_status_code()
            self.until_close = status >= 200 and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body_bytes:
            self.failure = BodyTooLarge(
                f"the upstream's answer exceeds the {self.max_body_bytes}-byte limit"
            )
            raise self.failure
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._reset()
            self.received = True
            return
        chunks, headers = self.chunks, self.headers
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.reusable = not self.until_close and self.parser.should_keep_alive()
        self._reset()
        self.waiter = None
        if waiter is None or waiter.done():
            return
        encoding = headers.get("content-encoding")
        if encoding is not None and body:
            try:
                body = decoded_body(body, encoding, self.max_body_bytes)
            except HttpClientError as exc:
                self.reusable = False
                waiter.set_exception(exc)
                return
        waiter.set_result(RawAnswer(status, headers, body))

    def _refuse(self, problem: str) -> None:
        """Stop parsing: the answer is over a limit (raised through httptools)."""
        self.failure = ProtocolError(problem)
        raise self.failure

    # -- the pool's side

    def send(self, data: bytes) -> asyncio.Future[RawAnswer]:
        assert self.transport is not None
        waiter = self.loop.create_future()
        self.waiter = waiter
        self.reusable = False
        self.transport.write(data)
        return waiter

    def timed_out(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # the answer beat the timer: keep the connection
            return
        waiter.set_exception(TimeoutError())
        self.close()

    def _fail(self, error: HttpClientError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()
