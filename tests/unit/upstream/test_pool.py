"""HttpPool (gateway/http_client.py) against real servers on 127.0.0.1.

Each test starts a small asyncio server whose connections behave in one controlled way
(answer, answer badly, stay silent, close...) and looks at both sides: what the pool returns
or raises, and what the server saw (the request bytes, how many connections, which of them the
client closed). No mocks; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import pytest
import trustme

from gateway.upstream.pool import HttpPool
from gateway.upstream.wire import (
    MAX_HEADER_BYTES,
    BodyTooLarge,
    BodyTruncated,
    ConnectFailed,
    ConnectionLost,
    ProtocolError,
    RawAnswer,
    UnsafeRequest,
)

# --------------------------------------------------------------------------- servers


class Peer:
    """One connection the server accepted."""

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = len(server.peers)
        self.requests: list[bytes] = []
        self.client_closed = False
        """The client closed its side (EOF or reset seen while waiting for a request)."""

    async def request(self) -> bytes | None:
        """The next whole request (head and Content-Length body), or None once the client
        closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.client_closed = True
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = head + await self.reader.readexactly(length)
        self.requests.append(data)
        self.server.requests.append(data)
        return data

    def send(self, data: bytes) -> None:
        self.writer.write(data)


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    """A TCP server on 127.0.0.1 (port 0) running ``handler`` for each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self.open = 0
        self.peak = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def accepted(self) -> int:
        return len(self.peers)

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
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ended it; a cancelled handler task would be logged as an error
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def pooled(
    port: int,
    *,
    size: int = 4,
    max_body_bytes: int = 1 << 20,
    keepalive_timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[HttpPool]:
    pool = HttpPool(
        "http",
        "127.0.0.1",
        port,
        size=size,
        connect_timeout=1.0,
        max_body_bytes=max_body_bytes,
        keepalive_timeout=keepalive_timeout,
        headers=headers,
    )
    try:
        yield pool
    finally:
        await pool.close()


async def get(
    pool: HttpPool, target: str = "/", headers: Mapping[str, str] | None = None
) -> RawAnswer:
    return await pool.request("GET", target, headers or {}, None, 1.0)


async def eventually(check: Callable[[], bool], within: float = 1.0) -> None:
    """Wait, polling, until ``check()`` holds; fail after ``within`` seconds."""
    for _ in range(int(within / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    assert check(), "the condition did not come true in time"


def response(
    body: bytes = b"ok",
    *,
    status: str = "200 OK",
    headers: Sequence[tuple[str, str]] = (),
    length: bool = True,
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{version} {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def keep_answering(data: bytes) -> Handler:
    """A handler answering every request on its connection with ``data``, until EOF."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(data)

    return handler


def answer_once(data: bytes) -> Handler:
    """A handler answering the first request with ``data``, then waiting for the client's
    EOF (the connection stays open on the server's side)."""

    async def handler(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(data)
            await peer.request()

    return handler


async def never_answer(peer: Peer) -> None:
    """Read requests and answer none of them."""
    while await peer.request() is not None:
        pass


# --------------------------------------------------------------------------- requests


@pytest.mark.asyncio
async def test_get_gives_status_lowercased_headers_and_body() -> None:
    data = response(b'{"id": 7}', headers=[("Content-Type", "application/json"), ("X-Ray", "a")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        answer = await get(pool)
    assert answer.status == 200
    assert answer.headers == {
        "content-type": "application/json",
        "x-ray": "a",
        "content-length": "9",
    }
    assert answer.body == b'{"id": 7}'


@pytest.mark.asyncio
async def test_get_sends_request_line_host_fixed_and_call_headers_without_length() -> None:
    fixed = {"User-Agent": "gateway-test/1", "Accept": "application/json"}
    async with (
        serving(keep_answering(response())) as server,
        pooled(server.port, headers=fixed) as pool,
    ):
        await get(pool, "/v1/things?id=7", {"X-Request-Id": "abc"})
    assert server.requests == [
        b"GET /v1/things?id=7 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"User-Agent: gateway-test/1\r\n"
        b"Accept: application/json\r\n"
        b"X-Request-Id: abc\r\n"
        b"\r\n"
    ]


@pytest.mark.asyncio
async def test_post_with_body_sends_its_content_length() -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        await pool.request("POST", "/v1/things", {}, b'{"name":"x"}', 1.0)
    assert server.requests == [
        b"POST /v1/things HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b'Content-Length: 12\r\n\r\n{"name":"x"}'
    ]


@pytest.mark.asyncio
async def test_post_without_body_sends_content_length_zero() -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        await pool.request("POST", "/v1/things:run", {}, None, 1.0)
    (sent,) = server.requests
    assert sent.endswith(b"\r\nContent-Length: 0\r\n\r\n")


# --------------------------------------------------------------------------- keep-alive


@pytest.mark.asyncio
async def test_sequential_requests_reuse_one_connection() -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        for _ in range(3):
            assert (await get(pool)).body == b"ok"
        assert pool.idle == 1
        assert pool.in_use == 0
    assert server.accepted == 1
    assert len(server.requests) == 3


@pytest.mark.asyncio
async def test_answer_with_connection_close_is_not_reused() -> None:
    data = response(headers=[("Connection", "close")])
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        await get(pool)
        await eventually(lambda: server.peers[0].client_closed)
        assert pool.idle == 0
        await get(pool)
    assert server.accepted == 2


@pytest.mark.asyncio
async def test_http_1_0_answer_is_not_reused() -> None:
    data = response(version="HTTP/1.0")
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        await get(pool)
        await eventually(lambda: server.peers[0].client_closed)
        await get(pool)
    assert server.accepted == 2


# --------------------------------------------------------------------------- framing


@pytest.mark.asyncio
async def test_chunked_answer_is_joined_and_connection_reused() -> None:
    async def chunked(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"4\r\nWiki\r\n", b"5\r\npedia\r\n", b"0\r\n\r\n"):
                peer.send(part)
                await peer.writer.drain()

    async with serving(chunked) as server, pooled(server.port) as pool:
        first = await get(pool)
        second = await get(pool)
    assert first.body == second.body == b"Wikipedia"
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_a_reset_inside_an_answer_delimited_by_close_is_a_truncated_body() -> None:
    """Only a clean end of the connection ends such a body; a reset cuts it short."""

    async def reset_midway(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await peer.writer.drain()
            await asyncio.sleep(0.01)
            sock = peer.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.writer.transport.abort()

    async with serving(reset_midway) as server, pooled(server.port) as pool:
        with pytest.raises(BodyTruncated):
            await get(pool)


@pytest.mark.asyncio
async def test_answer_delimited_by_close_is_read_to_the_end() -> None:
    async def until_close(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await peer.writer.drain()
            await asyncio.sleep(0.01)
            peer.send(b"part two")
        # returning closes the connection: that ends the body

    async with serving(until_close) as server, pooled(server.port) as pool:
        answer = await get(pool)
        assert pool.idle == 0
        assert (await get(pool)).body == b"part one, part two"
    assert answer.body == b"part one, part two"
    assert server.accepted == 2


@pytest.mark.asyncio
async def test_204_has_no_body_and_keeps_the_connection() -> None:
    data = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        answer = await get(pool)
        await get(pool)
    assert (answer.status, answer.body) == (204, b"")
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_interim_103_answer_is_skipped_for_the_final_one() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

    async def hints_first(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(early)
            await peer.writer.drain()
            await asyncio.sleep(0.01)
            peer.send(response(b"final"))

    async with serving(hints_first) as server, pooled(server.port) as pool:
        answer = await get(pool)
        assert (await get(pool)).body == b"final"
    assert (answer.status, answer.body) == (200, b"final")
    assert "link" not in answer.headers
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_repeated_headers_are_joined_with_a_comma() -> None:
    data = response(headers=[("Set-Cookie", "a=1"), ("X-Tag", "one"), ("set-cookie", "b=2")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        answer = await get(pool)
    assert answer.headers["set-cookie"] == "a=1, b=2"
    assert answer.headers["x-tag"] == "one"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "data",
    [
        response(b"first") + b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        response(b"first") + b"garbage",
        response(b"first", headers=[("Connection", "close")]) + b"more",
        response(b"", status="204 No Content", length=False, version="HTTP/1.0") + b"ok",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        response(b"first") + b"\r\n",
        response(b"first\n") + b"\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\r\n",
        response(b"", status="204 No Content", length=False) + b"\r",
    ],
    ids=[
        "a-second-answer",
        "garbage",
        "data-after-connection-close",
        "data-after-an-http-1.0-204",
        "a-204-with-a-chunked-body",
        "crlf-after-a-length",
        "lf-after-a-body-ending-with-lf",
        "crlf-after-a-chunked-answer",
        "cr-after-a-204",
    ],
)
async def test_bytes_after_the_answer_in_its_read_refuse_it(data: bytes) -> None:
    """The stream is out of step with the requests (a smuggled answer, or a server that
    frames its answers otherwise than the client): the answer is refused, never reused."""

    async def chatty(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(data)

    async with serving(chatty) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="after its answer"):
            await get(pool)
        assert (pool.in_use, pool.idle) == (0, 0)
        await eventually(lambda: server.peers[0].client_closed)


CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "body", "connections"),
    [
        (response(b'{"id": 7}\n'), b'{"id": 7}\n', 1),
        (response(b"\r\n\r\n"), b"\r\n\r\n", 2),
        (CHUNKED_OK + b"\r\n", b"ok", 1),
        (CHUNKED_OK + b"X-Trailer: a\r\n\r\n", b"ok", 1),
        (response(b"", status="204 No Content", length=False), b"", 1),
    ],
    ids=["body-ending-with-lf", "body-of-line-ends", "chunked", "chunked-trailer", "204"],
)
async def test_answers_ending_with_their_own_line_ends_are_delivered(
    data: bytes, body: bytes, connections: int
) -> None:
    """And their connection is reused, but after a body of CR and LF bytes only: its end
    cannot be told from stray line ends after it."""
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == body
        assert (await get(pool)).body == body
    assert server.accepted == connections


@pytest.mark.asyncio
async def test_an_answer_whose_last_read_is_its_line_ends_is_delivered_not_reused() -> None:
    async def split(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(CHUNKED_OK)
            await peer.writer.drain()
            await asyncio.sleep(0.01)
            peer.send(b"\r\n")

    async with serving(split) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == b"ok"
        assert (await get(pool)).body == b"ok"
    assert server.accepted == 2


@pytest.mark.asyncio
async def test_bytes_arriving_on_an_idle_connection_discard_it() -> None:
    async def unsolicited(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(response())
            await asyncio.sleep(0.02)
            peer.send(response(b"nobody asked"))
            await peer.request()

    async with serving(unsolicited) as server, pooled(server.port) as pool:
        await get(pool)
        await eventually(lambda: server.peers[0].client_closed)
        assert (await get(pool)).body == b"ok"
    assert server.accepted == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "data",
    [
        b"\r\n" + response(),
        b"\r" + response(),
        b"\n" + response(),
        response(b"", status="100 Continue", length=False) + b"\r\n" + response(),
        response(b"", status="103 Early Hints", length=False) * 2 + b"\n" + response(),
    ],
    ids=["crlf", "cr", "lf", "crlf-after-100", "lf-after-the-second-103"],
)
async def test_line_ends_before_a_status_line_are_refused(data: bytes) -> None:
    """llhttp skips them; RFC 9112 2.2 allows that to servers reading requests only."""
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="before a status line"):
            await get(pool)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "parts",
    [
        (b"HTTP/1.1 100 Continue\r\n\r\n", b"\r\n" + response()),
        (b"HTTP/1.1 100 Continue\r\n\r", b"\n\r\n" + response()),
        (b"HTTP/1.1 100 Contin", b"ue\r\n\r\n\n" + response()),
        (b"HTTP/1.1 100 Continue\r\n", b"\r", b"\n\r\n" + response()),
    ],
    ids=["next-read", "interim-end-split", "interim-head-split", "a-one-byte-read"],
)
async def test_line_ends_after_an_interim_answer_split_across_reads_are_refused(
    parts: tuple[bytes, ...],
) -> None:
    async def in_pieces(peer: Peer) -> None:
        if await peer.request() is not None:
            for part in parts:
                peer.send(part)
                await peer.writer.drain()
                await asyncio.sleep(0.01)
            await peer.request()

    async with serving(in_pieces) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="before a status line"):
            await get(pool)


@pytest.mark.asyncio
async def test_an_interim_answer_split_across_reads_is_skipped() -> None:
    parts = (b"HTTP/1.1 100 Contin", b"ue\r\n\r", b"\n" + response(b"final"))

    async def in_pieces(peer: Peer) -> None:
        while await peer.request() is not None:
            for part in parts:
                peer.send(part)
                await peer.writer.drain()
                await asyncio.sleep(0.01)

    async with serving(in_pieces) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == b"final"
        assert (await get(pool)).body == b"final"
    assert server.accepted == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "coding",
    ["identity, chunked", "chunked, chunked", "gzip", "gzip, chunked", "chunked, identity"],
)
async def test_a_transfer_encoding_other_than_a_lone_chunked_is_refused(coding: str) -> None:
    data = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n".encode() + b"0\r\n\r\n"
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError):
            await get(pool)


@pytest.mark.asyncio
async def test_chunked_twice_on_two_lines_is_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with (
        serving(answer_once(data + b"2\r\nok\r\n0\r\n\r\n")) as server,
        pooled(server.port) as pool,
    ):
        with pytest.raises(ProtocolError, match="not a lone chunked"):
            await get(pool)


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["O\x00K", "O\x0bK", "O\x01K", "O\x7fK", "O\x1bK"])
async def test_a_control_character_in_the_reason_phrase_is_refused(reason: str) -> None:
    data = response(status=f"200 {reason}")
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="reason phrase"):
            await get(pool)


@pytest.mark.asyncio
async def test_a_tab_in_the_reason_phrase_is_accepted() -> None:
    data = response(status="200 O\tK")
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        assert (await get(pool)).status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("status", ["000 Zero", "099 Low", "000"])
async def test_a_status_below_100_is_refused_at_once(status: str) -> None:
    """Not taken for an interim answer: the pool would wait for an answer that never comes."""
    async with serving(answer_once(response(status=status))) as server, pooled(server.port) as pool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ProtocolError, match="status 0"):
            await pool.request("GET", "/", {}, None, 5.0)
        assert loop.time() - start < 1.0


@pytest.mark.asyncio
async def test_sixteen_interim_answers_are_skipped_and_a_seventeenth_is_refused() -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    sixteen, seventeen = interim * 16 + response(), interim * 17 + response()
    async with serving(keep_answering(sixteen)) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == b"ok"
    async with serving(keep_answering(seventeen)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="more than 16 interim"):
            await get(pool)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 150 Odd\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 150 Odd\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["100-with-length", "150-with-a-body", "150-chunked"],
)
async def test_an_interim_answer_that_frames_a_body_is_refused(head: bytes) -> None:
    """RFC 9110 15.2: a 1xx answer ends with its header section (llhttp would read a body
    for any 1xx but 100, 102 and 103, which h11 takes for the next status line)."""
    async with serving(answer_once(head + response())) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="frames a body"):
            await get(pool)


# --------------------------------------------------------------------------- encodings


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_body_is_decoded(coding: str, encode: Callable[[bytes], bytes]) -> None:
    text = b'{"items": [' + b", ".join(b'"x"' for _ in range(200)) + b"]}"
    data = response(encode(text), headers=[("Content-Encoding", coding)])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        answer = await get(pool)
    assert answer.body == text


@pytest.mark.asyncio
async def test_gzip_body_of_several_members_is_decoded_whole() -> None:
    body = gzip.compress(b"first half, ") + gzip.compress(b"second half")
    data = response(body, headers=[("Content-Encoding", "gzip")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == b"first half, second half"


@pytest.mark.asyncio
async def test_a_body_of_many_empty_gzip_members_is_refused_at_once() -> None:
    """Each member costs a copy of the rest of the body: 200,000 empty members (4 MiB)
    took seconds of loop time before the member count was bounded."""
    empty = gzip.compress(b"")
    members = (4 * 1024 * 1024) // len(empty)
    data = response(empty * members, headers=[("Content-Encoding", "gzip")])
    async with (
        serving(keep_answering(data)) as server,
        pooled(server.port, max_body_bytes=8 * 1024 * 1024) as pool,
    ):
        with pytest.raises(ProtocolError, match="more than 16 members"):
            await get(pool)


@pytest.mark.asyncio
async def test_sixteen_gzip_members_are_still_read() -> None:
    body = b"".join(gzip.compress(bytes([65 + n])) for n in range(16))
    data = response(body, headers=[("Content-Encoding", "gzip")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == bytes(range(65, 81))


@pytest.mark.asyncio
async def test_deflate_with_a_small_zlib_window_is_read_as_zlib() -> None:
    packer = zlib.compressobj(wbits=9)  # header byte 0x18, not the usual 0x78
    body = packer.compress(b"small window " * 20) + packer.flush()
    assert body[0] != 0x78
    data = response(body, headers=[("Content-Encoding", "deflate")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        assert (await get(pool)).body == b"small window " * 20


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [zlib.compress(b"ok") + b"garbage", zlib.compress(b"ok") * 2, _raw_deflate(b"ok") + b"\x00"],
    ids=["garbage", "two-streams", "raw-then-a-nul"],
)
async def test_bytes_after_a_deflate_stream_are_refused(body: bytes) -> None:
    """Never dropped unread: garbage, or a second stream that would be data lost."""
    data = response(body, headers=[("Content-Encoding", "deflate")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="after its stream"):
            await get(pool)
        assert pool.idle == 0


@pytest.mark.asyncio
async def test_unknown_content_encoding_raises_protocol_error() -> None:
    data = response(b"\x1b\x03\x00", headers=[("Content-Encoding", "br")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="br"):
            await get(pool)
        assert pool.idle == 0


@pytest.mark.asyncio
async def test_corrupt_gzip_body_raises_protocol_error() -> None:
    data = response(b"\x1f\x8b\x08\x00garbage", headers=[("Content-Encoding", "gzip")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="gzip"):
            await get(pool)


@pytest.mark.asyncio
async def test_truncated_gzip_body_raises_protocol_error() -> None:
    whole = gzip.compress(b"0123456789" * 100)
    data = response(whole[: len(whole) // 2], headers=[("Content-Encoding", "gzip")])
    async with serving(keep_answering(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="gzip"):
            await get(pool)


@pytest.mark.asyncio
async def test_gzip_bomb_raises_body_too_large() -> None:
    bomb = gzip.compress(bytes(10_000_000))
    assert len(bomb) < 64 * 1024
    data = response(bomb, headers=[("Content-Encoding", "gzip")])
    async with (
        serving(keep_answering(data)) as server,
        pooled(server.port, max_body_bytes=64 * 1024) as pool,
    ):
        with pytest.raises(BodyTooLarge, match="decompressed"):
            await get(pool)


# --------------------------------------------------------------------------- limits and bad answers


@pytest.mark.asyncio
async def test_content_length_over_the_limit_fails_before_the_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"  # and no body ever
    async with (
        serving(answer_once(head)) as server,
        pooled(server.port, max_body_bytes=1000) as pool,
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(BodyTooLarge, match="1000000"):
            await pool.request("GET", "/", {}, None, 5.0)
        assert loop.time() - start < 1.0
        await eventually(lambda: server.peers[0].client_closed)
        assert (pool.in_use, pool.idle) == (0, 0)


@pytest.mark.asyncio
async def test_chunked_body_over_the_limit_raises_body_too_large() -> None:
    chunk = b"3c\r\n" + b"x" * 60 + b"\r\n"
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
    async with (
        serving(keep_answering(data)) as server,
        pooled(server.port, max_body_bytes=100) as pool,
    ):
        with pytest.raises(BodyTooLarge, match="100-byte"):
            await get(pool)
        assert pool.idle == 0


@pytest.mark.asyncio
async def test_headers_over_the_limit_raise_protocol_error() -> None:
    filler = [(f"X-Fill-{n}", "a" * 1000) for n in range(MAX_HEADER_BYTES // 1000 + 2)]
    data = response(headers=filler)
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="headers exceed"):
            await get(pool)


@pytest.mark.asyncio
async def test_an_endless_header_line_is_cut_off_at_the_limit() -> None:
    async def endless(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nX-Long: ")
            for _ in range(MAX_HEADER_BYTES // 4096 + 2):  # never ends the line
                peer.send(b"a" * 4096)
            await peer.request()

    async with serving(endless) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="headers exceed"):
            await get(pool)


@pytest.mark.asyncio
async def test_head_requests_are_refused_before_anything_is_sent() -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        with pytest.raises(UnsafeRequest, match="HEAD"):
            await pool.request("HEAD", "/", {}, None, 1.0)
        assert server.accepted == 0


@pytest.mark.asyncio
async def test_garbage_answer_raises_protocol_error() -> None:
    data = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
    async with serving(answer_once(data)) as server, pooled(server.port) as pool:
        with pytest.raises(ProtocolError, match="malformed"):
            await get(pool)
        await eventually(lambda: server.peers[0].client_closed)


@pytest.mark.asyncio
async def test_body_cut_short_raises_body_truncated() -> None:
    async def cut(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async with serving(cut) as server, pooled(server.port) as pool:
        with pytest.raises(BodyTruncated):
            await get(pool)


@pytest.mark.asyncio
async def test_close_without_answer_raises_connection_lost_not_received() -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()

    async with serving(hang_up) as server, pooled(server.port) as pool:
        with pytest.raises(ConnectionLost) as caught:
            await get(pool)
        assert pool.in_use == 0
    assert caught.value.received is False
    assert server.accepted == 1  # a fresh connection: nothing to retry


# --------------------------------------------------------------------------- stale connections


async def drop_second_request_on_first_connection(peer: Peer) -> None:
    """Answer every request, except that the first connection closes without answering its
    second request: what a request meets when the server closed the idle connection just
    before it arrived."""
    count = 0
    while await peer.request() is not None:
        count += 1
        if peer.index == 0 and count == 2:
            return
        peer.send(response(f"connection {peer.index}, request {count}".encode()))


@pytest.mark.asyncio
async def test_idle_connection_the_server_closed_is_replaced() -> None:
    async def answer_then_close(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.send(response())
            peer.writer.write_eof()
            await peer.request()  # None once the client closed its side too

    async with serving(answer_then_close) as server, pooled(server.port) as pool:
        await get(pool)
        await eventually(lambda: server.peers[0].client_closed)
        # even a POST without Idempotency-Key: nothing was sent on the dead connection
        answer = await pool.request("POST", "/v1/things", {}, b"{}", 1.0)
    assert answer.body == b"ok"
    assert server.accepted == 2
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_get_lost_on_a_reused_connection_is_retried_on_a_new_one() -> None:
    async with (
        serving(drop_second_request_on_first_connection) as server,
        pooled(server.port) as pool,
    ):
        await get(pool)
        answer = await get(pool, "/again")
        assert (pool.in_use, pool.idle) == (0, 1)
    assert answer.body == b"connection 1, request 1"
    assert server.accepted == 2
    assert server.requests[1] == server.requests[2]


@pytest.mark.asyncio
async def test_post_without_idempotency_key_lost_on_a_reused_connection_is_not_retried() -> None:
    async with (
        serving(drop_second_request_on_first_connection) as server,
        pooled(server.port) as pool,
    ):
        await get(pool)
        with pytest.raises(ConnectionLost) as caught:
            await pool.request("POST", "/v1/things", {}, b"{}", 1.0)
        assert pool.in_use == 0
    assert caught.value.received is False
    assert server.accepted == 1
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_post_with_idempotency_key_lost_on_a_reused_connection_is_retried() -> None:
    async with (
        serving(drop_second_request_on_first_connection) as server,
        pooled(server.port) as pool,
    ):
        await get(pool)
        answer = await pool.request("POST", "/v1/things", {"Idempotency-Key": "k1"}, b"{}", 1.0)
    assert answer.body == b"connection 1, request 1"
    assert server.accepted == 2
    assert server.requests[1] == server.requests[2]
    assert b"Idempotency-Key: k1\r\n" in server.requests[2]


@pytest.mark.asyncio
async def test_get_lost_after_part_of_an_answer_is_not_retried() -> None:
    async def half_answer(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            count += 1
            if count == 2:
                peer.send(b"HTTP/1.1 200 OK\r\nContent-")
                return
            peer.send(response())

    async with serving(half_answer) as server, pooled(server.port) as pool:
        await get(pool)
        with pytest.raises(ConnectionLost) as caught:
            await get(pool)
    assert caught.value.received is True
    assert server.accepted == 1


# --------------------------------------------------------------------------- failures and time


@pytest.mark.asyncio
async def test_connect_refused_raises_connect_failed_and_frees_the_slot() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        async with pooled(sock.getsockname()[1], size=1) as pool:
            for _ in range(2):  # the second would wait for the slot if the first kept it
                with pytest.raises(ConnectFailed):
                    await get(pool)
            assert pool.in_use == 0


@pytest.mark.asyncio
async def test_silent_server_times_out_and_the_connection_is_closed() -> None:
    async with serving(never_answer) as server, pooled(server.port) as pool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/", {}, None, 0.1)
        assert 0.09 <= loop.time() - start < 0.9
        assert (pool.in_use, pool.idle) == (0, 0)
        await eventually(lambda: server.peers[0].client_closed)


@pytest.mark.asyncio
async def test_cancelled_request_closes_its_connection() -> None:
    async with serving(never_answer) as server, pooled(server.port) as pool:
        task = asyncio.create_task(get(pool))
        await eventually(lambda: len(server.requests) == 1)
        assert pool.in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (pool.in_use, pool.idle) == (0, 0)
        await eventually(lambda: server.peers[0].client_closed)


# --------------------------------------------------------------------------- pool


@pytest.mark.asyncio
async def test_pool_size_bounds_the_connections() -> None:
    async def slow(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.02)
            peer.send(response())

    async with serving(slow) as server, pooled(server.port, size=2) as pool:
        answers = await asyncio.gather(*(get(pool, f"/{n}") for n in range(5)))
        assert (pool.in_use, pool.idle) == (0, 2)
    assert [a.status for a in answers] == [200] * 5
    assert server.peak == 2
    assert server.accepted == 2
    assert len(server.requests) == 5


@pytest.mark.asyncio
async def test_waiting_for_a_connection_times_out_at_the_deadline() -> None:
    async with serving(never_answer) as server, pooled(server.port, size=1) as pool:
        holder = asyncio.create_task(get(pool))
        await eventually(lambda: len(server.requests) == 1)
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/", {}, None, 0.05)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert pool.in_use == 0
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_idle_connection_is_closed_after_the_keepalive_timeout() -> None:
    async with (
        serving(keep_answering(response())) as server,
        pooled(server.port, keepalive_timeout=0.05) as pool,
    ):
        await get(pool)
        assert pool.idle == 1
        await eventually(lambda: server.peers[0].client_closed)
        assert pool.idle == 0
        await get(pool)
    assert server.accepted == 2


@pytest.mark.asyncio
async def test_close_ends_idle_connections_and_refuses_later_requests() -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        await get(pool)
        await pool.close()
        assert pool.idle == 0
        await eventually(lambda: server.peers[0].client_closed)
        with pytest.raises(ConnectFailed, match="closed"):
            await get(pool)
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_close_wakes_requests_waiting_for_a_connection() -> None:
    async with serving(never_answer) as server, pooled(server.port, size=1) as pool:
        holder = asyncio.create_task(get(pool))
        await eventually(lambda: len(server.requests) == 1)
        waiter = asyncio.create_task(get(pool))
        await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(ConnectFailed, match="closed"):
            await waiter
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        await eventually(lambda: server.peers[0].client_closed)


# --------------------------------------------------------------------------- unsafe requests


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/", {"X-Note": "a\r\nX-Evil: 1"}),
        ("/", {"X-Note": "a\nb"}),
        ("/", {"X-Note": "a\x00b"}),
        ("/", {"X-Evil\r\nX-Note": "a"}),
        ("/", {"X-Evil: 1\nX-Note": "a"}),
        ("/a b", {}),
        ("/a\r\nX-Evil: 1", {}),
        ("/a\nb", {}),
        ("/a\x00b", {}),
    ],
    ids=[
        "value-crlf",
        "value-lf",
        "value-nul",
        "name-crlf",
        "name-colon-lf",
        "target-space",
        "target-crlf",
        "target-lf",
        "target-nul",
    ],
)
async def test_unsafe_request_is_refused_before_anything_is_sent(
    target: str, headers: dict[str, str]
) -> None:
    async with serving(keep_answering(response())) as server, pooled(server.port) as pool:
        with pytest.raises(UnsafeRequest):
            await pool.request("GET", target, headers, None, 1.0)
        assert pool.in_use == 0
    assert server.accepted == 0
    assert server.requests == []


@pytest.mark.asyncio
async def test_unsafe_fixed_header_is_refused_when_the_pool_is_made() -> None:
    with pytest.raises(UnsafeRequest):
        HttpPool(
            "http",
            "127.0.0.1",
            80,
            size=1,
            connect_timeout=1.0,
            max_body_bytes=1,
            headers={"User-Agent": "x\r\nX-Evil: 1"},
        )


@pytest.mark.asyncio
async def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        HttpPool("ftp", "127.0.0.1", 21, size=1, connect_timeout=1.0, max_body_bytes=1)


@pytest.mark.asyncio
async def test_https_origin_is_verified_and_used_with_keep_alive() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while (await reader.readuntil(b"\r\n\r\n")) and not writer.is_closing():
                writer.write(response(b"secret"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    try:
        pool = HttpPool(
            "https",
            "localhost",
            port,
            size=2,
            connect_timeout=2.0,
            max_body_bytes=1 << 20,
            ssl_context=trusting,
        )
        try:
            for _ in range(3):
                answer = await pool.request("GET", "/", {}, None, 2.0)
                assert (answer.status, answer.body) == (200, b"secret")
            assert accepted == 1
        finally:
            await pool.close()
        untrusting = HttpPool(
            "https", "localhost", port, size=1, connect_timeout=2.0, max_body_bytes=1 << 20
        )
        try:
            with pytest.raises(ConnectFailed, match=r"(?i)certificate"):
                await untrusting.request("GET", "/", {}, None, 2.0)
        finally:
            await untrusting.close()
    finally:
        server.close()
        await server.wait_closed()
