"""Differential test: the unary HTTP/1.1 pool (gateway/upstream/pool.py) against aiohttp.

The pool replaced ``aiohttp.ClientSession`` on the unary path; this file holds it to the
library's behaviour or stricter. Every case sends the same request through an ``HttpPool``
and through a ``ClientSession`` (default settings: it decompresses gzip and deflate, as the
pool does) to the same real server on 127.0.0.1, and compares what each delivers: the
status, the body bytes and the headers (names in lower case, repeated ones joined with
``", "``). The servers are small asyncio servers that write exact bytes, and an
``aiohttp.web`` application for answers as a real framework makes them.

Where the answer is broken or over a limit, the pool must fail wherever aiohttp fails, and
may fail where aiohttp delivers (the pool bounds bodies, aiohttp does not). Trailer fields
of a chunked answer stay out of the headers in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.upstream.pool import HttpPool
from gateway.upstream.wire import (
    MAX_HEADER_BYTES,
    BodyTooLarge,
    BodyTruncated,
    ConnectionLost,
    HttpClientError,
    ProtocolError,
)
from tests.support.harness import serving_app

LIMIT = 1 << 20
"""The pool's max_body_bytes in these tests."""
TIMEOUT = 5.0
"""Per request, either client; every case answers or fails in milliseconds."""

# --------------------------------------------------------------------------- servers


class Peer:
    """One connection the server accepted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request (head and Content-Length body), or None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + await self.reader.readexactly(length)

    async def send(self, parts: Sequence[bytes]) -> None:
        """Write ``parts`` so that each arrives in a read of its own."""
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(0.002)
            self.writer.write(part)
            await self.writer.drain()


Script = Callable[[Peer], Awaitable[None]]


class Upstream:
    """A TCP server on 127.0.0.1, port 0, running ``script`` for each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            await self.script(Peer(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or stop() ended the script
        finally:
            writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Upstream]:
    upstream = Upstream(script)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


@dataclass(frozen=True)
class Answer:
    """What the server writes for every request on a connection."""

    parts: tuple[bytes, ...]
    """Written one by one, so the client sees them in separate reads."""
    close: bool = False
    """Close the connection after the answer (else wait for the next request)."""

    def script(self) -> Script:
        async def run(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(self.parts)
                if self.close:
                    return

        return run


def answer(*parts: bytes, close: bool = False) -> Answer:
    return Answer(parts, close)


def head(status: str = "200 OK", *headers: tuple[str, str], version: str = "HTTP/1.1") -> bytes:
    lines = [f"{version} {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def whole(
    body: bytes, status: str = "200 OK", *headers: tuple[str, str], version: str = "HTTP/1.1"
) -> bytes:
    """A complete answer with a Content-Length."""
    return head(status, *headers, ("Content-Length", str(len(body))), version=version) + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"
CHUNKED = ("Transfer-Encoding", "chunked")
JSON = ("Content-Type", "application/json")


def thirds(data: bytes) -> list[bytes]:
    step = -(-len(data) // 3)
    return [data[at : at + step] for at in range(0, len(data), step)]


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Delivered:
    status: int
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", " (the pool's RawAnswer form)."""
    body: bytes


@dataclass(frozen=True)
class Request:
    method: str = "GET"
    target: str = "/v1/things"
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


Fetch = Callable[[Request], Awaitable[Delivered]]


@contextlib.asynccontextmanager
async def through_pool(port: int) -> AsyncIterator[Fetch]:
    pool = HttpPool(
        "http", "127.0.0.1", port, size=4, connect_timeout=TIMEOUT, max_body_bytes=LIMIT
    )

    async def fetch(request: Request) -> Delivered:
        raw = await pool.request(
            request.method, request.target, request.headers, request.body, TIMEOUT
        )
        return Delivered(raw.status, dict(raw.headers), raw.body)

    try:
        yield fetch
    finally:
        await pool.close()


def joined(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        found[key] = value if key not in found else f"{found[key]}, {value}"
    return found


@contextlib.asynccontextmanager
async def through_aiohttp(port: int, timeout: float = TIMEOUT) -> AsyncIterator[Fetch]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def fetch(request: Request) -> Delivered:
        async with session.request(
            request.method,
            f"http://127.0.0.1:{port}{request.target}",
            data=request.body,
            headers=dict(request.headers),
        ) as response:
            body = await response.read()
            return Delivered(response.status, joined(response.headers), body)

    try:
        yield fetch
    finally:
        await session.close()


async def both(port: int, request: Request | None = None) -> tuple[Delivered, Delivered]:
    """One request through each client (each with a connection of its own)."""
    request = request or Request()
    async with through_pool(port) as pool:
        ours = await pool(request)
    async with through_aiohttp(port) as session:
        theirs = await session(request)
    return ours, theirs


# --------------------------------------------------------------------------- answers


ANSWERS = [
    pytest.param(answer(whole(b'{"id": 7, "name": "x"}', "200 OK", JSON)), id="json-200"),
    pytest.param(
        answer(whole(b'{"id": 8}', "201 Created", JSON, ("Location", "/v1/things/8"))),
        id="created-201-with-body",
    ),
    pytest.param(answer(head("204 No Content")), id="no-content-204"),
    pytest.param(
        answer(
            whole(b'{"error": {"code": 404, "message": "no such thing"}}', "404 Not Found", JSON)
        ),
        id="not-found-404-json",
    ),
    pytest.param(
        answer(
            whole(
                b"{}",
                "200 OK",
                JSON,
                ("Set-Cookie", "a=1"),
                ("X-Tag", "one"),
                ("set-cookie", "b=2"),
                ("x-tag", "two"),
            )
        ),
        id="repeated-headers-joined",
    ),
    pytest.param(
        answer(
            head("200 OK", JSON, CHUNKED),
            chunk(b'{"items": ['),
            chunk(b'"a", "b"'),
            chunk(b"]}"),
            LAST_CHUNK,
        ),
        id="chunked",
    ),
    pytest.param(
        answer(head("200 OK", CHUNKED), b"2;name=value\r\n{}\r\n", LAST_CHUNK),
        id="chunked-with-extension",
    ),
    pytest.param(
        answer(
            head("200 OK", JSON, ("Connection", "close")),
            b'{"part": "one", ',
            b'"then": "two"}',
            close=True,
        ),
        id="body-until-close",
    ),
    pytest.param(answer(whole(b'{"v": 1.0}', "200 OK", JSON, version="HTTP/1.0")), id="http-1.0"),
    pytest.param(answer(whole(b"{}", "200")), id="status-without-reason"),
    pytest.param(
        answer(
            head("103 Early Hints", ("Link", "</style.css>; rel=preload")),
            whole(b'{"final": true}', "200 OK", JSON),
        ),
        id="interim-103",
    ),
    pytest.param(
        answer(head("100 Continue"), whole(b'{"final": true}', "200 OK", JSON)),
        id="interim-100",
    ),
    pytest.param(
        answer(
            whole(
                gzip.compress(b'{"items": [' + b'"x", ' * 500 + b'"y"]}'),
                "200 OK",
                JSON,
                ("Content-Encoding", "gzip"),
            )
        ),
        id="gzip",
    ),
    pytest.param(
        answer(
            head("200 OK", JSON, ("Content-Encoding", "gzip"), CHUNKED),
            *(chunk(part) for part in thirds(gzip.compress(b'{"big": "' + b"z" * 5000 + b'"}'))),
            LAST_CHUNK,
        ),
        id="gzip-chunked",
    ),
    pytest.param(
        answer(
            whole(
                gzip.compress(b"first, ") + gzip.compress(b"second"),
                "200 OK",
                ("Content-Encoding", "gzip"),
            )
        ),
        id="gzip-two-members",
    ),
    pytest.param(
        answer(
            whole(
                zlib.compress(b'{"deflated": true}'),
                "200 OK",
                JSON,
                ("Content-Encoding", "deflate"),
            )
        ),
        id="deflate-zlib",
    ),
    pytest.param(
        answer(
            whole(
                raw_deflate(b'{"deflated": "raw"}'), "200 OK", JSON, ("Content-Encoding", "deflate")
            )
        ),
        id="deflate-raw",
    ),
    pytest.param(answer(whole(b"x" * LIMIT, "200 OK")), id="content-length-at-the-limit"),
    pytest.param(
        answer(
            head("200 OK", CHUNKED), *(chunk(b"y" * (LIMIT // 4)) for _ in range(4)), LAST_CHUNK
        ),
        id="chunked-at-the-limit",
    ),
    pytest.param(
        answer(head("200 OK", ("Connection", "close")), b"w" * LIMIT, close=True),
        id="until-close-at-the-limit",
    ),
    pytest.param(
        answer(whole(gzip.compress(bytes(LIMIT)), "200 OK", ("Content-Encoding", "gzip"))),
        id="gzip-at-the-limit-decompressed",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("scripted", ANSWERS)
async def test_the_pool_delivers_what_aiohttp_delivers(scripted: Answer) -> None:
    async with serving(scripted.script()) as upstream:
        ours, theirs = await both(upstream.port)
    assert ours == theirs


# --------------------------------------------------------------------------- a real framework

BIG = {"items": [{"id": n, "name": f"thing {n}"} for n in range(2000)]}


def framework_app() -> web.Application:
    async def plain(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": 7, "name": "x"})

    async def created(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        return web.json_response({"id": 8, **payload}, status=201, headers={"Location": "/8"})

    async def no_content(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def missing(request: web.Request) -> web.StreamResponse:
        error = {"error": {"code": 404, "message": "no such thing", "status": "NOT_FOUND"}}
        return web.json_response(error, status=404)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"items": [', b'"a", ', b'"b"', b"]}"):
            await response.write(part)
        await response.write_eof()
        return response

    async def gzipped(request: web.Request) -> web.StreamResponse:
        response = web.json_response(BIG)
        response.enable_compression(web.ContentCoding.gzip)  # whatever the client accepts
        return response

    async def deflated(request: web.Request) -> web.StreamResponse:
        response = web.json_response(BIG)
        response.enable_compression(web.ContentCoding.deflate)
        return response

    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"L" * LIMIT, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/plain", plain)
    app.router.add_post("/created", created)
    app.router.add_delete("/no-content", no_content)
    app.router.add_get("/missing", missing)
    app.router.add_get("/streamed", streamed)
    app.router.add_get("/gzipped", gzipped)
    app.router.add_get("/deflated", deflated)
    app.router.add_get("/large", large)
    return app


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(Request("GET", "/plain"), id="json-200"),
        pytest.param(
            Request("POST", "/created", b'{"name": "x"}', {"Content-Type": "application/json"}),
            id="post-201",
        ),
        pytest.param(Request("DELETE", "/no-content"), id="delete-204"),
        pytest.param(Request("GET", "/missing"), id="json-404"),
        pytest.param(Request("GET", "/streamed"), id="chunked"),
        pytest.param(Request("GET", "/gzipped"), id="gzip"),
        pytest.param(Request("GET", "/deflated"), id="deflate"),
        pytest.param(Request("GET", "/large"), id="body-at-the-limit"),
        pytest.param(Request("GET", "/nowhere"), id="framework-404"),
    ],
)
async def test_the_pool_delivers_what_aiohttp_delivers_from_aiohttp_web(request_: Request) -> None:
    async with serving_app(framework_app()) as url:
        port = int(url.rpartition(":")[2])
        ours, theirs = await both(port, request_)
    # the Date header may tick between the two requests
    assert ours.headers.pop("date")
    assert theirs.headers.pop("date")
    assert ours == theirs


# --------------------------------------------------------------------------- keep-alive


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scripted", "connections"),
    [
        pytest.param(answer(whole(b"{}", "200 OK", JSON)), 1, id="keep-alive"),
        pytest.param(
            answer(head("200 OK", CHUNKED), chunk(b"{}"), LAST_CHUNK), 1, id="chunked-keep-alive"
        ),
        pytest.param(answer(head("204 No Content")), 1, id="204-keep-alive"),
        pytest.param(
            answer(whole(b"{}", "200 OK", ("Connection", "close"))), 3, id="connection-close"
        ),
        pytest.param(answer(whole(b"{}", "200 OK", version="HTTP/1.0")), 3, id="http-1.0"),
        pytest.param(answer(head("200 OK"), b"{}", close=True), 3, id="body-until-close"),
    ],
)
async def test_connections_are_reused_as_aiohttp_reuses_them(
    scripted: Answer, connections: int
) -> None:
    """Three requests one after the other through each client: as many connections each."""
    async with serving(scripted.script()) as upstream:
        async with through_pool(upstream.port) as pool:
            ours = [await pool(Request(target=f"/{n}")) for n in range(3)]
        by_pool = upstream.accepted
        async with through_aiohttp(upstream.port) as session:
            theirs = [await session(Request(target=f"/{n}")) for n in range(3)]
        by_aiohttp = upstream.accepted - by_pool
    assert ours == theirs
    assert by_pool == by_aiohttp == connections


# --------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class Broken:
    """An answer at least one client must refuse."""

    serve: Answer | Script
    ours: type[HttpClientError]
    """What the pool raises."""
    theirs: type[Exception] | None
    """What aiohttp raises, or None where it delivers (and the pool is the stricter)."""
    theirs_within: float = TIMEOUT
    """aiohttp's total timeout."""


SSH_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
_GZIPPED = gzip.compress(b", ".join(str(n).encode() for n in range(5000)))
GZIP_CUT_SHORT = _GZIPPED[: len(_GZIPPED) // 2]
_REFUSED = aiohttp.ClientResponseError


async def _endless_header_line(peer: Peer) -> None:
    if await peer.request() is not None:
        await peer.send([b"HTTP/1.1 200 OK\r\nX-Long: ", b"a" * (MAX_HEADER_BYTES + 4096)])
        await peer.request()  # never ends the line; waits for the client to give up


FAILURES = [
    # over the pool's limits: aiohttp has none and delivers
    pytest.param(
        Broken(answer(whole(b"x" * (LIMIT + 1))), BodyTooLarge, None),
        id="content-length-over-the-limit",
    ),
    pytest.param(
        Broken(
            answer(head("200 OK", CHUNKED), chunk(b"y" * LIMIT), chunk(b"y"), LAST_CHUNK),
            BodyTooLarge,
            None,
        ),
        id="chunked-over-the-limit",
    ),
    pytest.param(
        Broken(answer(head("200 OK"), b"w" * (LIMIT + 1), close=True), BodyTooLarge, None),
        id="until-close-over-the-limit",
    ),
    pytest.param(
        Broken(
            answer(whole(gzip.compress(bytes(LIMIT + 1)), "200 OK", ("Content-Encoding", "gzip"))),
            BodyTooLarge,
            None,
        ),
        id="gzip-over-the-limit-decompressed",
    ),
    pytest.param(
        Broken(
            answer(whole(b"h", "200 OK", *((f"X-Fill-{n}", "a" * 1000) for n in range(70)))),
            ProtocolError,
            None,
        ),
        id="header-block-over-64KiB",
    ),
    # cut off
    pytest.param(
        Broken(
            answer(head("200 OK", ("Content-Length", "10")), b"abc", close=True),
            BodyTruncated,
            aiohttp.ClientPayloadError,
        ),
        id="content-length-body-truncated",
    ),
    pytest.param(
        Broken(
            answer(head("200 OK", CHUNKED), chunk(b"abc"), b"5\r\nab", close=True),
            BodyTruncated,
            aiohttp.ClientPayloadError,
        ),
        id="chunked-body-truncated",
    ),
    pytest.param(
        Broken(answer(close=True), ConnectionLost, aiohttp.ServerDisconnectedError),
        id="closed-without-answering",
    ),
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 200 OK\r\nContent-", close=True),
            ConnectionLost,
            aiohttp.ServerDisconnectedError,
        ),
        id="closed-in-the-headers",
    ),
    pytest.param(
        Broken(
            answer(
                whole(
                    GZIP_CUT_SHORT,
                    "200 OK",
                    ("Content-Encoding", "gzip"),
                )
            ),
            ProtocolError,
            None,  # aiohttp delivers what it could inflate
        ),
        id="gzip-stream-cut-short",
    ),
    pytest.param(
        Broken(
            answer(whole(b"\x1f\x8b\x08\x00garbage", "200 OK", ("Content-Encoding", "gzip"))),
            ProtocolError,
            None,  # aiohttp delivers an empty body
        ),
        id="gzip-corrupt",
    ),
    # not HTTP/1.1
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok"),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="malformed-status-line",
    ),
    pytest.param(
        Broken(answer(SSH_BANNER), ProtocolError, aiohttp.ClientResponseError),
        id="not-http-at-all",
    ),
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk"),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="conflicting-content-lengths",
    ),
    pytest.param(
        Broken(
            answer(head("200 OK", ("Content-Length", "2"), CHUNKED), chunk(b"ok"), LAST_CHUNK),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="content-length-and-chunked",
    ),
    pytest.param(
        Broken(
            answer(head("200 OK", CHUNKED) + b"zz\r\nok\r\n" + LAST_CHUNK),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="bad-chunk-size",
    ),
    pytest.param(
        Broken(
            answer(head("200 OK", CHUNKED), b"zz\r\nok\r\n" + LAST_CHUNK, close=True),
            ProtocolError,
            TimeoutError,
            theirs_within=0.2,  # aiohttp 3.14 notices nothing and waits for its timeout
        ),
        id="bad-chunk-size-after-the-headers",
    ),
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 200 OK\r\nX-Note: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="nul-in-a-header-value",
    ),
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 200 OK\r\nBogus\r\nContent-Length: 2\r\n\r\nok"),
            ProtocolError,
            aiohttp.ClientResponseError,
        ),
        id="header-line-without-colon",
    ),
    pytest.param(
        Broken(_endless_header_line, ProtocolError, aiohttp.ClientResponseError),
        id="endless-header-line",
    ),
    # lenient parsing: aiohttp accepts, the pool refuses
    pytest.param(
        Broken(
            answer(b"HTTP/1.1 200 OK\r\nX-Note: one\r\n  two\r\nContent-Length: 2\r\n\r\nok"),
            ProtocolError,
            None,  # aiohttp unfolds it into "one  two"
        ),
        id="obsolete-line-folding",
    ),
    pytest.param(
        Broken(answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), ProtocolError, None),
        id="bare-lf-line-ends",
    ),
    # over the per-line and per-answer limits both share (8190 bytes a line, 128 fields)
    pytest.param(
        Broken(answer(whole(b"{}", "200 OK", ("X-Long", "a" * 10_000))), ProtocolError, _REFUSED),
        id="header-line-over-8190-bytes",
    ),
    pytest.param(
        Broken(answer(whole(b"{}", "200 " + "O" * 10_000)), ProtocolError, _REFUSED),
        id="status-line-over-8190-bytes",
    ),
    pytest.param(
        Broken(
            answer(whole(b"{}", "200 OK", *((f"X-H{n}", "v") for n in range(128)))),
            ProtocolError,
            _REFUSED,
        ),
        id="129-header-fields",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("broken", FAILURES)
async def test_the_pool_fails_wherever_aiohttp_fails(broken: Broken) -> None:
    script = broken.serve.script() if isinstance(broken.serve, Answer) else broken.serve
    async with serving(script) as upstream:
        async with through_pool(upstream.port) as pool:
            with pytest.raises(broken.ours):
                await pool(Request())
        async with through_aiohttp(upstream.port, broken.theirs_within) as session:
            if broken.theirs is None:
                delivered = await session(Request())
                assert delivered.status == 200
            else:
                with pytest.raises(broken.theirs):
                    await session(Request())


# --------------------------------------------------------------------------- trailers


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "trailer",
    [
        pytest.param(
            ("Content-Type", "text/html"),
            id="content-type",
        ),
        pytest.param(
            ("Content-Encoding", "gzip"),
            id="content-encoding",
        ),
        pytest.param(
            ("Retry-After", "3600"),
            id="retry-after",
        ),
    ],
)
async def test_trailer_fields_stay_out_of_the_headers(trailer: tuple[str, str]) -> None:
    """A chunked answer may end with trailer fields; RFC 9110 6.5.1 forbids merging them into
    the header section. aiohttp keeps them out of ``response.headers``."""
    name, value = trailer
    scripted = answer(
        head("200 OK", JSON, CHUNKED),
        chunk(b'{"id": 7}'),
        f"0\r\n{name}: {value}\r\n\r\n".encode(),
    )
    async with serving(scripted.script()) as upstream:
        ours, theirs = await both(upstream.port)
    assert theirs.headers == {"content-type": "application/json", "transfer-encoding": "chunked"}
    assert ours == theirs


# --------------------------------------------------------------------------- not laxity


@pytest.mark.asyncio
async def test_x_gzip_is_decoded_where_aiohttp_passes_it_on() -> None:
    """A difference that is no laxity: the pool decodes the x-gzip alias, as RFC 9110 8.4.1.3
    asks of recipients; aiohttp delivers the compressed bytes as they came."""
    body = gzip.compress(b'{"id": 7}')
    scripted = answer(whole(body, "200 OK", JSON, ("Content-Encoding", "x-gzip")))
    async with serving(scripted.script()) as upstream:
        ours, theirs = await both(upstream.port)
    assert ours.body == b'{"id": 7}'
    assert theirs.body == body
    assert ours.headers == theirs.headers
