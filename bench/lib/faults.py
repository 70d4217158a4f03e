"""A fault-injecting HTTP/1.1 proxy for the soak run (bench/soak.py), on asyncio streams.

    gateway ──HTTP/1.1──▶ FaultProxy ──HTTP/1.1──▶ emulator

Each client connection gets an upstream connection of its own, and requests are relayed
one at a time, byte for byte (the gateway's pools never pipeline). Per request, one
seeded ``random.Random`` decides, in the order requests arrive, whether to spoil it:

=============  ==============================================================================
fault          what the client sees
=============  ==============================================================================
reset_before   its connection reset (RST) before the request is forwarded: nothing happened
reset_after    the request forwarded, then the connection reset halfway through the answer's
               first bytes: the upstream acted, the client cannot know it
stall          nothing: the request is neither forwarded nor answered, the connection held
               open until the client gives up (or ``stall_limit`` passes, then a reset)
drip           the answer (JSON, or an event stream as it comes) relayed one byte at a time,
               ``drip_delay`` seconds apart
=============  ==============================================================================

Error statuses are not made here: the emulator's own fault knob answers them
(``POST /_emulator/faults``), and the proxy sees and records their statuses.

Every request is one :class:`Exchange` in :attr:`FaultProxy.ledger`: its request id
(``X-Request-ID``), method, path, the fault drawn, whether it was forwarded, the answer's
status and whether the whole answer reached the client. That ledger is the upstream side
of the soak run's reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

FAULTS = ("reset_before", "reset_after", "stall", "drip")
HEAD_END = b"\r\n\r\n"
PIECE = 64 * 1024
LAST_BYTES = 1.0  # seconds an answer may take to finish once the client sent its next request


class ProtocolError(Exception):
    """A message the proxy cannot frame (it closes the connection)."""


@dataclass(frozen=True)
class FaultPlan:
    """How often each fault is drawn: ``rate`` of all requests, split by ``weights``."""

    rate: float
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FAULTS, 1.0))
    drip_delay: tuple[float, float] = (0.001, 0.006)
    stall_limit: float = 120.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        unknown = set(self.weights) - set(FAULTS)
        if unknown or not any(self.weights.values()):
            raise ValueError(f"weights name faults of {FAULTS}, at least one above 0")

    def draw(self, rng: random.Random) -> str:
        """A fault's name, or "" (most of the time)."""
        if rng.random() >= self.rate:
            return ""
        names = list(self.weights)
        return rng.choices(names, weights=[self.weights[n] for n in names])[0]


@dataclass(slots=True)
class Exchange:
    """One request through the proxy, and what became of it."""

    seq: int
    connection: int
    index: int  # requests before it on its connection: 0 on a fresh connection
    method: str
    path: str  # without the query
    request_id: str
    idempotency_key: bool
    fault: str
    started: float
    drip_delay: float = 0.0
    forwarded: bool = False
    status: int | None = None
    answered: bool = False  # the whole answer reached the client
    client_gone: bool = False  # the client closed its connection before that
    upstream_closed: bool = False  # the upstream closed without (a whole) answer
    ended: float | None = None


@dataclass(slots=True)
class Head:
    raw: bytes
    start_line: str
    headers: dict[str, str]  # names lower-cased

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        parts = self.start_line.split(" ")
        return parts[1] if len(parts) > 1 else ""

    @property
    def status(self) -> int:
        parts = self.start_line.split(" ")
        try:
            return int(parts[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {self.start_line!r}") from None

    def wants_close(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


async def read_head(reader: asyncio.StreamReader, prefix: bytes = b"") -> Head | None:
    """The next message head (``prefix``: its first bytes, already read), or None at a
    clean end of stream."""
    try:
        raw = prefix + await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial and not prefix:
            return None
        raise ProtocolError("the stream ended inside a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("a message head beyond the reader's limit") from exc
    lines = raw[: -len(HEAD_END)].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Head(raw, lines[0], headers)


async def body_pieces(
    reader: asyncio.StreamReader, head: Head, *, bodiless: bool = False, request: bool = False
) -> AsyncIterator[bytes]:
    """The raw bytes of the body that follows ``head`` (chunk framing included), as they come.

    A response with neither length nor chunking runs to the end of the stream; a request
    without either has no body.
    """
    if bodiless:
        return
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        async for piece in _chunked(reader):
            yield piece
        return
    length = head.headers.get("content-length")
    if length is not None:
        left = int(length)
        while left > 0:
            piece = await reader.read(min(left, PIECE))
            if not piece:
                raise ProtocolError("the stream ended inside a body")
            left -= len(piece)
            yield piece
        return
    if request:
        return
    while piece := await reader.read(PIECE):
        yield piece


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        try:
            size_line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("the stream ended inside a chunked body") from exc
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            yield size_line + await _trailers(reader)
            return
        data = await reader.readexactly(size + 2)  # the chunk and its CRLF
        yield size_line + data


async def _trailers(reader: asyncio.StreamReader) -> bytes:
    raw = b""
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        if line == b"\r\n":
            return raw


def _is_bodiless(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _heard(watch: asyncio.Future[bytes]) -> bytes | None:
    """What a read of the client gave: None (nothing yet), b"" (it left), or its bytes."""
    if not watch.done() or watch.cancelled():
        return None
    return b"" if watch.exception() is not None else watch.result()


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.is_closing():
        writer.close()


class _Link:
    """A client connection and the upstream connection that serves it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.pending = b""  # the start of the next request, read while watching the client

    def take_pending(self) -> bytes:
        pending, self.pending = self.pending, b""
        return pending

    async def upstream(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.up_reader is None or self.up_writer is None or self.up_reader.at_eof():
            _close(self.up_writer)
            self.up_reader, self.up_writer = await asyncio.open_connection(host, port)
        return self.up_reader, self.up_writer

    def drop_upstream(self) -> None:
        _close(self.up_writer)
        self.up_reader = self.up_writer = None

    def close(self) -> None:
        _close(self.writer)
        self.drop_upstream()


class FaultProxy:
    """Listens on loopback and relays to ``upstream`` (host, port), spoiling some requests."""

    def __init__(self, upstream: tuple[str, int], plan: FaultPlan, seed: int) -> None:
        self.upstream = upstream
        self.plan = plan
        self.rng = random.Random(seed)
        self.ledger: list[Exchange] = []
        self.open_connections = 0
        self.connections = 0
        self.protocol_errors: Counter[str] = Counter()
        self._seq = itertools.count()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def faults_drawn(self) -> Counter[str]:
        return Counter(e.fault for e in self.ledger if e.fault)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.open_connections += 1
        self.connections += 1
        link = _Link(reader, writer)
        try:
            await self._requests(link, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            self.protocol_errors[type(exc).__name__] += 1
        except ProtocolError as exc:
            self.protocol_errors[str(exc)] += 1
        except asyncio.CancelledError:
            pass  # close(): asyncio's stream callback would log a cancelled handler
        finally:
            link.close()
            self.open_connections -= 1
            self._handlers.discard(task)

    async def _requests(self, link: _Link, connection: int) -> None:
        for index in itertools.count():
            head = await read_head(link.reader, link.take_pending())
            if head is None:
                return
            body = b"".join([p async for p in body_pieces(link.reader, head, request=True)])
            exchange = self._exchange(head, connection, index)
            try:
                keep = await self._handle(link, head, body, exchange)
            finally:
                exchange.ended = time.monotonic()
            if not keep or head.wants_close():
                return

    def _exchange(self, head: Head, connection: int, index: int) -> Exchange:
        fault = self.plan.draw(self.rng)
        exchange = Exchange(
            seq=next(self._seq),
            connection=connection,
            index=index,
            method=head.method,
            path=head.target.split("?", 1)[0],
            request_id=head.headers.get("x-request-id", ""),
            idempotency_key="idempotency-key" in head.headers,
            fault=fault,
            started=time.monotonic(),
        )
        if fault == "drip":
            exchange.drip_delay = self.rng.uniform(*self.plan.drip_delay)
        self.ledger.append(exchange)
        return exchange

    async def _handle(self, link: _Link, head: Head, body: bytes, exchange: Exchange) -> bool:
        """Serve one request; True when the connection may carry another."""
        if exchange.fault == "reset_before":
            reset(link.writer)
            return False
        if exchange.fault == "stall":
            await self._hold(link, exchange)
            return False
        up_reader, up_writer = await link.upstream(*self.upstream)
        up_writer.write(head.raw + body)
        await up_writer.drain()
        exchange.forwarded = True
        return await self._answer(link, up_reader, head.method, exchange)

    async def _hold(self, link: _Link, exchange: Exchange) -> None:
        """Say nothing until the client goes away; past ``stall_limit``, reset."""
        try:
            await asyncio.wait_for(link.reader.read(1), self.plan.stall_limit)
        except TimeoutError:
            reset(link.writer)
            return
        except ConnectionError:
            pass
        exchange.client_gone = True

    async def _answer(
        self, link: _Link, up_reader: asyncio.StreamReader, method: str, exchange: Exchange
    ) -> bool:
        """Relay the answer while watching the client: it may leave before the end."""
        relay = asyncio.ensure_future(self._relay(link, up_reader, method, exchange))
        watch = asyncio.ensure_future(link.reader.read(1))
        try:
            await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
            if _heard(watch):  # the next request is coming: this answer is all but relayed
                await asyncio.wait({relay}, timeout=LAST_BYTES)
        finally:
            if not relay.done():
                relay.cancel()
            watch.cancel()
            await asyncio.gather(relay, watch, return_exceptions=True)
        if relay.cancelled() or isinstance(relay.exception(), ConnectionError):
            exchange.client_gone = True
            link.drop_upstream()
            return False
        failure = relay.exception()
        if failure is not None:
            raise failure
        heard = _heard(watch)
        link.pending = heard or b""
        return bool(relay.result()) and heard != b""

    async def _relay(
        self, link: _Link, up_reader: asyncio.StreamReader, method: str, exchange: Exchange
    ) -> bool:
        head = await read_head(up_reader)
        if head is None:
            exchange.upstream_closed = True
            return False
        exchange.status = head.status
        pieces = body_pieces(up_reader, head, bodiless=_is_bodiless(method, head.status))
        if exchange.fault == "reset_after":
            first = await anext(pieces, b"")
            data = head.raw + first
            link.writer.write(data[: len(data) // 2])
            await link.writer.drain()
            reset(link.writer)
            link.drop_upstream()
            return False
        await self._send(link.writer, head.raw, exchange.drip_delay)
        async for piece in pieces:
            await self._send(link.writer, piece, exchange.drip_delay)
        exchange.answered = True
        framed = "content-length" in head.headers or "chunked" in head.headers.get(
            "transfer-encoding", ""
        )
        bodiless = _is_bodiless(method, head.status)
        return (framed or bodiless) and not head.wants_close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes, drip: float) -> None:
        if not drip:
            writer.write(data)
            await writer.drain()
            return
        for byte in data:  # the pause comes first: none after the answer's last byte
            await asyncio.sleep(drip)
            writer.write(bytes((byte,)))
            await writer.drain()
