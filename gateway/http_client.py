"""A lean HTTP/1.1 client for unary exchanges: keep-alive connections to one origin.

The unary path sends every call to the same origin, one request per connection at a time,
and needs none of what makes a general client general (cookies, redirects, proxies,
per-request URL objects, trace signals, stream readers). Measured on this project's
machines (``make bench-clients``, docs/BENCHMARKS.md), a grpc.aio handler that makes one
upstream GET costs about 256 µs of CPU per call through aiohttp's ``ClientSession`` and
about 153 µs through this pool; a bare handler costs about 96. So unary exchanges go
through :class:`HttpPool`, while long-lived streams (SSE), whose per-request cost is spread
over many events, keep aiohttp (gateway/upstream.py).

What is written here is only the connection handling: HTTP parsing is httptools' (llhttp,
the parser behind uvloop's and uvicorn's HTTP). The pool

* keeps at most ``size`` connections, reuses the most recently released one first, closes
  connections idle for ``keepalive_timeout`` and never reuses one whose answer was not read
  to its end, that the server asked to close, or that was abandoned (timeout, cancel);
* bounds each exchange by a deadline (loop time) and the connect by ``connect_timeout``;
* bounds answers by ``max_body_bytes`` (from Content-Length at once, else while reading)
  and their headers by :data:`MAX_HEADER_BYTES`; decodes gzip and deflate bodies, though it
  asks for neither;
* retries, like Go's net/http, a request that failed on a *reused* keep-alive connection
  before any byte of an answer arrived (the server closed it while idle), when the request
  is safe to repeat: an idempotent method, or one carrying an ``Idempotency-Key``;
* refuses header values or targets with CR, LF or NUL (the callers check metadata first;
  this is the last line).

Failures are :class:`HttpClientError` subclasses or :class:`TimeoutError`;
gateway/upstream.py turns them into the gateway's errors.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import httptools

MAX_HEADER_BYTES: Final = 64 * 1024
"""Most bytes of status line and headers accepted in one answer."""
REPEATABLE_METHODS: Final = frozenset({"GET", "OPTIONS", "PUT", "DELETE"})
"""Methods safe to send again after a reused connection failed before any answer. HEAD
is not among them because it is not supported at all: no route uses it, and an answer to
it carries a Content-Length without a body, which the parser cannot be told."""
_BAD: Final = frozenset("\r\n\x00")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


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


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
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
        if self.headers_done and self.until_close:
            self.on_message_complete()  # the body ran to the end of the connection
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

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > MAX_HEADER_BYTES:
            self.failure = ProtocolError(
                f"the upstream's answer headers exceed {MAX_HEADER_BYTES} bytes"
            )
            raise self.failure
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_done = True
        headers = self.headers
        length = headers.get("content-length")
        limit = self.pool.max_body_bytes
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
        if self.size > self.pool.max_body_bytes:
            self.failure = BodyTooLarge(
                f"the upstream's answer exceeds the {self.pool.max_body_bytes}-byte limit"
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
                body = _decoded(body, encoding, self.pool.max_body_bytes)
            except HttpClientError as exc:
                self.reusable = False
                waiter.set_exception(exc)
                return
        waiter.set_result(RawAnswer(status, headers, body))

    # -- the pool's side

    def send(self, data: bytes) -> asyncio.Future[RawAnswer]:
        assert self.transport is not None
        waiter = self.pool.loop.create_future()
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


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
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
    while True:  # a gzip body may hold several members, one after another
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
        if not rest or wbits != 16 + zlib.MAX_WBITS:
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _zlib_header(body: bytes) -> bool:
    """Whether ``body`` starts with a zlib header (RFC 1950: method 8, check bits)."""
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin, for one request at a time each.

    Create and use it inside the running loop; :meth:`close` ends it.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        size: int,
        connect_timeout: float,
        max_body_bytes: int,
        keepalive_timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r}")
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.size = size
        self.connect_timeout = connect_timeout
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self._ssl = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        default_port = 443 if scheme == "https" else 80
        authority = f"[{host}]" if ":" in host else host
        if port != default_port:
            authority = f"{authority}:{port}"
        fixed = [f"Host: {authority}\r\n"]
        for name, value in (headers or {}).items():
            _check(name, value)
            fixed.append(f"{name}: {value}\r\n")
        self._fixed = "".join(fixed)
        self._idle: list[_Connection] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open = 0
        self.in_use = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> RawAnswer:
        """One exchange within ``timeout`` seconds; ``target`` is the path and query."""
        if method == "HEAD":
            raise UnsafeRequest("HEAD requests are not supported by this client")
        deadline = self.loop.time() + timeout
        data = self._serialize(method, target, headers, body)
        repeatable = method in REPEATABLE_METHODS or "Idempotency-Key" in headers
        while True:
            connection, reused = await self._acquire(deadline)
            timer = self.loop.call_at(deadline, connection.timed_out)
            try:
                answer = await connection.send(data)
            except ConnectionLost as lost:
                self._release(connection)
                if reused and not lost.received and repeatable:
                    continue  # a keep-alive connection the server had closed while idle
                raise
            except BaseException:
                self._release(connection)
                raise
            finally:
                timer.cancel()
            self._release(connection)
            return answer

    def _serialize(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        if not _BAD.isdisjoint(target) or " " in target:
            raise UnsafeRequest("the request target holds a space, CR, LF or NUL")
        parts = [method, " ", target, " HTTP/1.1\r\n", self._fixed]
        for name, value in headers.items():
            _check(name, value)
            parts += (name, ": ", value, "\r\n")
        if body is not None or method in _BODY_METHODS:
            parts += ("Content-Length: ", str(len(body) if body else 0), "\r\n")
        parts.append("\r\n")
        head = "".join(parts).encode()
        return head + body if body else head

    async def _acquire(self, deadline: float) -> tuple[_Connection, bool]:
        while True:
            if self._closed:
                raise ConnectFailed("the connection pool is closed")
            now = self.loop.time()
            while self._idle:
                connection = self._idle.pop()
                if connection.closed or now - connection.idle_since > self.keepalive_timeout:
                    connection.close()
                    self._open -= 1
                    continue
                self.in_use += 1
                return connection, True
            if self._open < self.size:
                self._open += 1
                try:
                    connection = await self._connect(deadline)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
                self.in_use += 1
                return connection, False
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if not waiter.cancelled() and waiter.done():
                    self._wake()  # it was woken for us: pass the turn on
                else:
                    waiter.cancel()
                raise

    async def _connect(self, deadline: float) -> _Connection:
        budget = min(self.connect_timeout, deadline - self.loop.time())
        try:
            async with asyncio.timeout(budget):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except TimeoutError:
            if self.loop.time() >= deadline:
                raise
            raise ConnectFailed(f"no connection within {self.connect_timeout:.3g}s") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from exc
        return connection

    def _release(self, connection: _Connection) -> None:
        self.in_use -= 1
        if connection.reusable and not connection.closed and not self._closed:
            connection.idle_since = self.loop.time()
            self._idle.append(connection)
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(self.keepalive_timeout, self._sweep)
        else:
            connection.close()
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections that stayed idle for the keep-alive time."""
        self._sweeper = None
        now = self.loop.time()
        keep: list[_Connection] = []
        for connection in self._idle:
            if connection.closed or now - connection.idle_since >= self.keepalive_timeout:
                connection.close()
                self._open -= 1
            else:
                keep.append(connection)
        self._idle = keep
        if keep:
            self._sweeper = self.loop.call_later(self.keepalive_timeout, self._sweep)
        self._wake()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _check(name: str, value: str) -> None:
    if not _BAD.isdisjoint(value) or not _BAD.isdisjoint(name) or ":" in name:
        raise UnsafeRequest(f"the header {name!r} holds CR, LF or NUL")
