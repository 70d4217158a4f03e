"""Helpers shared by the emulator tests: an API client, SSE parsing, polling, a receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.emulator import EmulatorConfig

DEMO_KEY = "ggt_test_demo_key_0123456789"
JWT_SECRET = "test-secret-0123456789abcdef"
PASSWORD = "correct-horse"
FAST = EmulatorConfig(
    api_keys=(DEMO_KEY,),
    step_delay_seconds=0.01,
    stream_delay_seconds=0.0,
    jwt_secret=JWT_SECRET,
)
_UNSET: Any = object()


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw) if self.raw else None


@dataclass
class Api:
    """Calls the emulator as one credential (or none)."""

    session: aiohttp.ClientSession
    base: str
    token: str | None = None

    def as_token(self, token: str | None) -> Api:
        return Api(self.session, self.base, token)

    async def call(
        self,
        method: str,
        path: str,
        json: Any = _UNSET,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        payload: Any = data
        if json is not _UNSET:
            payload = orjson.dumps(json)
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base + path, data=payload, headers=sent
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> Reply:
        return await self.call("GET", path, headers=headers)

    async def post(self, path: str, json: Any = _UNSET, **kwargs: Any) -> Reply:
        return await self.call("POST", path, json, **kwargs)

    async def patch(self, path: str, json: Any = _UNSET, **kwargs: Any) -> Reply:
        return await self.call("PATCH", path, json, **kwargs)

    async def delete(self, path: str, *, headers: dict[str, str] | None = None) -> Reply:
        return await self.call("DELETE", path, headers=headers)


SignUp = Callable[..., Awaitable[Api]]


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> None:
    """Poll until `predicate()` holds; fail the test after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)


async def wait_execution(api: Api, execution_id: str, seconds: float = 3.0) -> dict[str, Any]:
    """Poll an execution until it is final."""
    latest: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal latest
        latest = (await api.get(f"/v1/executions/{execution_id}")).body
        return latest["status"] in ("completed", "failed", "cancelled")

    await wait_for(finished, seconds)
    return latest


@dataclass
class Event:
    id: str | None
    name: str | None
    data: Any


async def read_events(
    response: aiohttp.ClientResponse, comments: list[str] | None = None
) -> AsyncGenerator[Event, None]:
    """Parse `text/event-stream` into events (comments collected into `comments`)."""
    fields: dict[str, str] = {}
    async for raw_line in response.content:
        line = raw_line.decode().rstrip("\n")
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        if line == "":
            if fields:
                yield Event(
                    fields.get("id"), fields.get("event"), orjson.loads(fields.get("data", "null"))
                )
                fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes


@dataclass
class Receiver:
    """A webhook endpoint on port 0 that records what it is sent."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        self.arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        return web.json_response({"status": "ok"}, status=self.status)


async def serve_receiver() -> tuple[Receiver, web.AppRunner]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", target.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    target.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    return target, runner
