"""One keep-alive HTTP/1.1 connection of the unary pool: writes a request, parses its answer.

Parsing is httptools' (llhttp); what is written here is the bookkeeping around it: the
bounds on headers and body, interim (1xx) answers, bodies that run to the end of the
connection, and whether the connection may be reused. Exactly one request is in flight
on a connection; bytes that arrive when none is make the connection untrusted.

Where llhttp is lenient, this file is strict, so that the pool never accepts an answer that
aiohttp or h11 refuses (tests/integration/test_pool_hostile_answers.py):

* **Bytes after the answer.** A final answer is handed over only once the read that
  completed it has been parsed to its end. Any byte after it in that read — garbage, a
  second answer, the "body" of a 204 or 304, data after ``Connection: close`` or after an
  HTTP/1.0 answer, even a stray CR or LF — means the stream is out of step with the
  requests (the mark of response smuggling): the answer is refused with a
  :class:`~gateway.upstream.wire.ProtocolError` and the connection closed. Bytes that
  arrive later, while the connection is idle, come after the answer was handed over: they
  only close the connection, which is never reused. The check costs one look at the last
  byte of the read (and, when it is a CR or LF, at a few more).
* **Before a status line** llhttp skips CR and LF bytes (a leniency RFC 9112 2.2 grants to
  servers reading requests, not to clients): the first byte of every answer, interim ones
  included, must begin its status line.
* **Transfer-Encoding** must be exactly ``chunked``: any other coding, a list, or chunked
  twice is refused (RFC 9112 6.1 and 6.3 would read such a body to the close; the upstream
  is a JSON API, which never sends one).
* **The reason phrase** may not hold control characters other than HTAB (RFC 9112 4).
* **Interim answers**: a status below 100 is refused at once, as is a 1xx answer that frames
  a body (RFC 9110 15.2: it ends with its header section) or a run of more than
  :data:`~gateway.upstream.wire.MAX_INTERIM_ANSWERS`.

Every refusal is a :class:`~gateway.upstream.wire.ProtocolError`: the gateway's
``UPSTREAM_PROTOCOL_ERROR``, an outcome it cannot know (the request was sent and may have
been carried out), so it is repeated only when the request is safe to repeat.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final, cast

import httptools

from gateway.upstream.wire import (
    MAX_FIELDS,
    MAX_HEADER_BYTES,
    MAX_INTERIM_ANSWERS,
    MAX_LINE_BYTES,
    BodyTooLarge,
    BodyTruncated,
    ConnectionLost,
    HttpClientError,
    ProtocolError,
    RawAnswer,
    decoded_body,
)

_CTL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters but HTAB: not allowed in a reason phrase."""
_TAIL: Final = 16
"""Most bytes of a body compared with the end of the read that completed it."""


class Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body_bytes: int) -> None:
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[RawAnswer] | None = None
        self.answer: RawAnswer | None = None
        """A final answer parsed, handed over once the rest of its read is known."""
        self.in_answer = False
        """An answer (interim or final) has begun and not ended."""
        self.interims = 0
        """Interim answers to the request in flight."""
        self.head_tail = b""
        """The last bytes of a read that ended inside an answer's head."""
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = 0
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
        began = self.in_answer
        if not began:  # between answers: this byte must begin a status line
            if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
                self.close()
                return
            if data[0] in b"\r\n":
                self._fail(ProtocolError("the upstream sent a CR or LF before a status line"))
                return
        self.received = True
        interims = self.interims
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            if self.failure is None and self.answer is not None:  # llhttp's "Data after close"
                self._fail(ProtocolError(f"the upstream sent bytes after its answer ({exc})"))
            else:
                self._fail(self.failure or ProtocolError(f"malformed HTTP answer ({exc})"))
            return
        if self.interims != interims and self._line_end_after_interim(data, began, interims):
            self._fail(ProtocolError("the upstream sent a CR or LF before a status line"))
            return
        if self.answer is not None:
            self._deliver(data)
        elif not self.headers_done and self.waiter is not None:
            # the parser holds an unfinished status line or header in memory: bound it
            self.head_bytes += len(data)
            self.head_tail = (self.head_tail + data[-3:])[-3:]  # a read may be shorter
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
            self._deliver(None)
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
        if self.answer is not None:  # the answer is complete, yet its read goes on
            self._refuse("the upstream sent bytes after its answer")
        self.in_answer = True

    def on_status(self, reason: bytes) -> None:
        self.status_bytes += len(reason)  # the reason phrase may come in pieces
        if self.status_bytes + 13 > MAX_LINE_BYTES:  # "HTTP/1.1 200 " and the reason
            self._refuse(f"the upstream's status line exceeds {MAX_LINE_BYTES} bytes")
        if not reason.isalpha() and _CTL.search(reason) is not None:  # "OK" skips the search
            self._refuse("the upstream's reason phrase holds a control character")

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
        self.status = status = self.parser.get_status_code()
        headers = self.headers
        if status < 200:
            self._check_interim(status, headers)
        length = headers.get("content-length")
        limit = self.max_body_bytes
        if length is not None:  # llhttp refuses it together with a Transfer-Encoding
            if length.isdigit() and int(length) > limit:
                self.failure = BodyTooLarge(
                    f"the upstream's answer is {length} bytes, over the {limit}-byte limit"
                )
                raise self.failure
        elif (coding := headers.get("transfer-encoding")) is not None:
            if coding.strip(" \t").lower() != "chunked":
                # RFC 9112 6.3 reads such a body to the close; a JSON API never sends one
                self._refuse(
                    f"the upstream's answer has the Transfer-Encoding {coding!r}, "
                    "not a lone chunked"
                )
        else:
            self.until_close = status >= 200 and status not in (204, 304)

    def _check_interim(self, status: int, headers: dict[str, str]) -> None:
        """Refuse a status below 100, a 1xx answer that frames a body, or one too many."""
        if status < 100:
            self._refuse(f"the upstream's answer has the status {status:03d}")
        if status == 101:
            return  # llhttp stops at its end: "switched protocols"
        if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
            self._refuse(f"the upstream's interim answer {status} frames a body")
        self.interims += 1
        if self.interims > MAX_INTERIM_ANSWERS:
            self._refuse(f"the upstream sent more than {MAX_INTERIM_ANSWERS} interim answers")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body_bytes:
            self.failure = BodyTooLarge(
                f"the upstream's answer exceeds the {self.max_body_bytes}-byte limit"
            )
            raise self.failure
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.in_answer = False
        status = self.status
        if status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._reset()
            self.received = True
            return
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.reusable = not self.until_close and self.parser.should_keep_alive()
        self.answer = RawAnswer(status, self.headers, body)
        self._reset()

    def _refuse(self, problem: str) -> None:
        """Stop parsing: the answer breaks a rule or a limit (raised through httptools)."""
        self.failure = ProtocolError(problem)
        raise self.failure

    # -- what follows an answer in its read

    def _deliver(self, data: bytes | None) -> None:
        """Hand over the final answer, ``data`` being the read that completed it (None: the
        close did). Stray CR or LF bytes after it refuse it as any other byte does; where
        they cannot be told apart from its own last bytes, the connection is not reused."""
        answer, self.answer = self.answer, None
        assert answer is not None
        if data is not None and data[-1] in b"\r\n":
            after = _line_end_after(data, answer)
            if after:
                self._fail(ProtocolError("the upstream sent a CR or LF after its answer"))
                return
            if after is None:
                self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        encoding = answer.headers.get("content-encoding")
        if encoding is not None and answer.body:
            try:
                body = decoded_body(answer.body, encoding, self.max_body_bytes)
            except HttpClientError as exc:
                self.reusable = False
                waiter.set_exception(exc)
                return
            answer = RawAnswer(answer.status, answer.headers, body)
        waiter.set_result(answer)

    def _line_end_after_interim(self, data: bytes, began: bool, before: int) -> bool:
        """Whether a CR or LF follows, in ``data``, one of the interim answers it completed
        (llhttp skips them). An interim answer has no body: it ends with the first empty
        line of its head, which may have begun in the previous read (``began``)."""
        buffer = self.head_tail + data if began else data
        at = 0
        for _ in range(self.interims - before):
            end = buffer.find(b"\r\n\r\n", at)
            if end < 0:  # a head split across reads without head_tail: cannot happen
                return False
            at = end + 4
            if at < len(buffer) and buffer[at] in b"\r\n":
                return True
        return False

    # -- the pool's side

    def send(self, data: bytes) -> asyncio.Future[RawAnswer]:
        assert self.transport is not None
        waiter = self.loop.create_future()
        self.waiter = waiter
        self.reusable = False
        self.interims = 0
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
        self.answer = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _line_end_after(data: bytes, answer: RawAnswer) -> bool | None:
    """Whether CR or LF bytes follow ``answer`` at the end of ``data``, the read that
    completed it and that ends with a CR or LF; None when that cannot be told.

    An answer without a body, or chunked, ends with the empty line of its head or trailer
    section, after a byte that is neither CR nor LF: more than four CR and LF bytes at the
    end of the read are too many. A body framed by Content-Length ends with its own last
    bytes: if they hold a byte other than CR and LF, the read ends with them exactly when
    nothing follows (a suffix of CR and LF bytes would shift them)."""
    body = answer.body
    if not body or "transfer-encoding" in answer.headers:
        return data[-5] in b"\r\n" if len(data) >= 5 else None
    tail = body[-min(len(body), len(data), _TAIL) :]
    if not tail.rstrip(b"\r\n"):
        return None  # a body that ends with many line ends: they may be its own
    return not data.endswith(tail)
