"""A lean keep-alive HTTP/1.1 pool to one origin, for unary exchanges.

The unary path sends every call to the same origin, one request per connection at a time,
and needs none of what makes a general client general (cookies, redirects, proxies,
per-request URL objects, trace signals, stream readers); why this pool rather than
aiohttp's, with the measurements: docs/decisions/002-own-http11-pool.md. Long-lived
streams keep aiohttp (gateway/upstream/streams.py). The pool

* keeps at most ``size`` connections, reuses the most recently released one first, closes
  connections idle for ``keepalive_timeout`` and never reuses one whose answer was not read
  to its end, that the server asked to close, or that was abandoned (timeout, cancel);
* bounds each exchange by a deadline (loop time) and the connect by ``connect_timeout``;
* bounds answers by ``max_body_bytes`` (from Content-Length at once, else while reading)
  and their headers by :data:`~gateway.upstream.wire.MAX_HEADER_BYTES`; decodes gzip and
  deflate bodies, though it asks for neither;
* retries, like Go's net/http, a request that failed on a *reused* keep-alive connection
  before any byte of an answer arrived (the server closed it while idle), when the request
  is safe to repeat: an idempotent method, or one carrying an ``Idempotency-Key``;
* refuses header values or targets with CR, LF or NUL (the callers check metadata first;
  this is the last line);
* refuses every answer that aiohttp or h11 refuses, and an answer followed by any byte in
  the read that completed it (connection.py lists the rules;
  tests/integration/test_pool_hostile_answers.py holds the pool to both clients).

Failures are :mod:`gateway.upstream.wire` errors or :class:`TimeoutError`;
gateway/upstream/translate.py turns them into the gateway's errors.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Final

from gateway.upstream.connection import Connection
from gateway.upstream.request import safe_to_repeat
from gateway.upstream.wire import (
    BAD_CHARACTERS,
    ConnectFailed,
    ConnectionLost,
    RawAnswer,
    UnsafeRequest,
    check_header,
)

_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


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
            check_header(name, value)
            fixed.append(f"{name}: {value}\r\n")
        self._fixed = "".join(fixed)
        self._idle: list[Connection] = []
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
            # an answer to HEAD carries a Content-Length without a body, which the parser
            # cannot be told; no route uses HEAD
            raise UnsafeRequest("HEAD requests are not supported by this client")
        deadline = self.loop.time() + timeout
        data = self._serialize(method, target, headers, body)
        repeatable = safe_to_repeat(method, "Idempotency-Key" in headers)
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
        if not BAD_CHARACTERS.isdisjoint(target) or " " in target:
            raise UnsafeRequest("the request target holds a space, CR, LF or NUL")
        parts = [method, " ", target, " HTTP/1.1\r\n", self._fixed]
        for name, value in headers.items():
            check_header(name, value)
            parts += (name, ": ", value, "\r\n")
        if body is not None or method in _BODY_METHODS:
            parts += ("Content-Length: ", str(len(body) if body else 0), "\r\n")
        parts.append("\r\n")
        head = "".join(parts).encode()
        return head + body if body else head

    async def _acquire(self, deadline: float) -> tuple[Connection, bool]:
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

    async def _connect(self, deadline: float) -> Connection:
        budget = min(self.connect_timeout, deadline - self.loop.time())
        try:
            async with asyncio.timeout(budget):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self.loop, self.max_body_bytes),
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

    def _release(self, connection: Connection) -> None:
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
        keep: list[Connection] = []
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
