"""Server-sent events for streaming agent runs.

Each event is written as

    id: <sequence number, from 1>
    event: <name>
    data: <one-line JSON>

and `: ping` comment lines keep an idle stream alive. The vocabulary:
`run.started`, `tool.call`, `content.delta`, `usage`, `run.completed`, `error`.
A client that goes away is noticed within a polling slice (50 ms), and the
stream then stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

POLL_SECONDS = 0.05
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Disconnected(ConnectionResetError):
    """The client closed the connection while the stream was open."""


def encode_event(sequence: int, event: str, data: Any) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (sequence, event.encode(), orjson.dumps(data))


class EventStream:
    """Writes events and heartbeats to one prepared `text/event-stream` answer."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, heartbeat: float
    ) -> None:
        self._request = request
        self._response = response
        self._heartbeat = heartbeat
        self._sequence = 0
        self._last_write = time.monotonic()

    def _check_connected(self) -> None:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            raise Disconnected("client went away")

    async def _write(self, data: bytes) -> None:
        self._check_connected()
        await self._response.write(data)
        self._last_write = time.monotonic()

    async def send(self, event: str, data: Any) -> None:
        self._sequence += 1
        await self._write(encode_event(self._sequence, event, data))

    async def ping(self) -> None:
        await self._write(b": ping\n\n")

    async def pause(self, seconds: float, stop: Callable[[], bool]) -> bool:
        """Wait, with heartbeats; False as soon as `stop()` says so. Raises `Disconnected`."""
        deadline = time.monotonic() + seconds
        while True:
            self._check_connected()
            if stop():
                return False
            now = time.monotonic()
            if now >= deadline:
                return True
            if now - self._last_write >= self._heartbeat:
                await self.ping()
            await asyncio.sleep(min(POLL_SECONDS, deadline - now, self._heartbeat))


def stream_response() -> web.StreamResponse:
    """An unprepared `text/event-stream` answer."""
    return web.StreamResponse(status=200, headers=HEADERS)
