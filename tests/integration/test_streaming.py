"""StreamAgentRun: live relay from SSE, failures, cancellation and backpressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.support.harness import RunningGateway, details_of, serving_app, serving_gateway

Stream = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


async def _wait_until(check: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


# --------------------------------------------------------------------------- emulator


@dataclass
class Stack:
    emulator: RunningEmulator
    gateway: RunningGateway
    agents: agent_pb2_grpc.AgentServiceAsyncStub
    agent_id: str = ""


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.02)
    async with running_emulator(config) as emulator, serving_gateway(emulator.url) as gateway:
        agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
        agent = await agents.CreateAgent(
            agent_pb2.CreateAgentRequest(
                agent=agent_pb2.Agent(
                    name="Streamer", system_prompt="You are chatty.", tools=["calculator"]
                )
            ),
            timeout=5,
        )
        yield Stack(emulator, gateway, agents, agent.id)


def _run(stack: Stack, message: str, timeout: float) -> Any:
    request = agent_pb2.StreamAgentRunRequest(agent_id=stack.agent_id, message=message)
    return stack.agents.StreamAgentRun(request, timeout=timeout)


@pytest.mark.asyncio
async def test_run_is_relayed_live_and_in_order(stack: Stack) -> None:
    started = time.monotonic()
    arrivals: list[float] = []
    events: list[agent_pb2.AgentRunEvent] = []
    async for event in _run(stack, "Please compute 6 * 7 for me, step by step", timeout=10):
        arrivals.append(time.monotonic() - started)
        events.append(event)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "run_started"
    assert kinds[1] == "tool_call"
    assert kinds[-2:] == ["usage", "run_completed"]
    deltas = [e.content_delta.delta for e in events if e.HasField("content_delta")]
    assert len(deltas) > 5
    completed = events[-1].run_completed
    assert "".join(deltas) == completed.content
    assert events[1].tool_call.result.number_value == 42
    assert events[0].run_started.run_id == completed.id
    assert [int(e.event_id) for e in events] == list(range(1, len(events) + 1))
    # relayed as produced: the first delta arrived well before the last one
    first_delta = kinds.index("content_delta")
    assert arrivals[-1] - arrivals[first_delta] > 0.02 * (len(deltas) - 2)
    assert await _wait_until(lambda: stack.emulator.state.open_streams == 0)


@pytest.mark.asyncio
async def test_cancel_closes_upstream_and_cancels_the_run(stack: Stack) -> None:
    call = _run(stack, " ".join(["word"] * 200), timeout=30)
    first = await call.read()
    assert isinstance(first, agent_pb2.AgentRunEvent)
    run_id = first.run_started.run_id
    assert stack.emulator.state.open_streams == 1
    call.cancel()
    assert await _wait_until(lambda: stack.emulator.state.open_streams == 0)
    assert await _wait_until(
        lambda: any(r["path"].endswith(f"/runs/{run_id}/cancel") for r in _requests(stack.emulator))
    )


@pytest.mark.asyncio
async def test_deadline_closes_upstream(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in _run(stack, " ".join(["word"] * 200), timeout=0.3):
            pass
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await _wait_until(lambda: stack.emulator.state.open_streams == 0)


@pytest.mark.asyncio
async def test_error_event_ends_with_matching_status(stack: Stack) -> None:
    call = _run(stack, " ".join(["word"] * 200), timeout=30)
    first = await call.read()
    run_id = first.run_started.run_id
    async with aiohttp.ClientSession() as session:
        url = f"{stack.emulator.url}/v1/agents/{stack.agent_id}/runs/{run_id}/cancel"
        async with session.post(url) as response:
            assert response.status == 200

    async def drain() -> None:
        while await call.read() is not grpc.aio.EOF:
            pass

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain()
    assert caught.value.code() is grpc.StatusCode.CANCELLED
    info = details_of(caught.value)["ErrorInfo"]
    assert info.reason == "CANCELLED"
    assert int(info.metadata["events_relayed"]) >= 1


@pytest.mark.asyncio
async def test_missing_agent_is_not_found(stack: Stack) -> None:
    request = agent_pb2.StreamAgentRunRequest(agent_id="agent_nope", message="hi")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack.agents.StreamAgentRun(request, timeout=5):
            pass
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.asyncio
async def test_unary_calls_not_starved_by_streams(stack: Stack) -> None:
    """Streams have their own pool: with the unary pool tiny, runs still do not block it."""
    async with serving_gateway(stack.emulator.url, upstream_concurrency=1) as gateway:
        agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
        request = agent_pb2.StreamAgentRunRequest(
            agent_id=stack.agent_id, message=" ".join(["w"] * 300)
        )
        calls = [agents.StreamAgentRun(request, timeout=30) for _ in range(4)]
        for call in calls:
            await call.read()
        assert stack.emulator.state.open_streams == 4
        agent = await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id=stack.agent_id), timeout=2)
        assert agent.id == stack.agent_id
        for call in calls:
            call.cancel()
    assert await _wait_until(lambda: stack.emulator.state.open_streams == 0)


def _requests(emulator: RunningEmulator) -> list[dict[str, str]]:
    return emulator.state.requests.last(500)


# --------------------------------------------------------------------------- scripted SSE


@dataclass
class Scripted:
    stream: Stream | None = None
    written: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, RunningGateway]]:
    script = Scripted()

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        assert script.stream is not None
        try:
            await script.stream(request, response)
        finally:
            script.done.set()
        return response

    app = web.Application()
    app.router.add_post("/v1/agents/{agent_id}/run", answer)
    async with (
        serving_app(app) as url,
        serving_gateway(url, stream_idle_timeout=0.4) as gateway,
    ):
        yield script, gateway


def _scripted_run(gateway: RunningGateway, timeout: float) -> Any:
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    request = agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi")
    return agents.StreamAgentRun(request, timeout=timeout).__aiter__()


def _event(name: str, data: str, event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


STARTED = '{"run_id": "run_1", "agent_id": "agent_1", "model": "m"}'


async def _collect(
    gateway: RunningGateway, timeout: float
) -> tuple[list[agent_pb2.AgentRunEvent], grpc.aio.AioRpcError | None]:
    events: list[agent_pb2.AgentRunEvent] = []
    try:
        async for event in _scripted_run(gateway, timeout):
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        return events, exc
    return events, None


@pytest.mark.asyncio
async def test_cut_mid_stream_is_unavailable_with_count(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    script, gateway = scripted

    async def stream(request: web.Request, response: web.StreamResponse) -> None:
        await response.write(_event("run.started", STARTED, 1))
        await response.write(_event("content.delta", '{"delta": "a"}', 2))
        await response.write(b'event: content.delta\ndata: {"del')  # cut mid-event
        assert request.transport is not None
        request.transport.close()

    script.stream = stream
    events, error = await _collect(gateway, timeout=5)
    assert len(events) == 2
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    info = details_of(error)["ErrorInfo"]
    assert info.metadata["events_relayed"] == "2"


@pytest.mark.asyncio
async def test_clean_end_without_completion_is_unavailable(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    script, gateway = scripted

    async def stream(request: web.Request, response: web.StreamResponse) -> None:
        await response.write(_event("run.started", STARTED, 1))

    script.stream = stream
    events, error = await _collect(gateway, timeout=5)
    assert len(events) == 1
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_STREAM_CUT"


@pytest.mark.asyncio
async def test_idle_stream_is_deadline_exceeded_but_heartbeats_keep_it(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    script, gateway = scripted

    async def heartbeats_then_silence(request: web.Request, response: web.StreamResponse) -> None:
        await response.write(_event("run.started", STARTED, 1))
        for _ in range(8):  # 0.8 s of heartbeats, twice the idle limit
            await asyncio.sleep(0.1)
            await response.write(b": ping\n\n")
        await response.write(_event("content.delta", '{"delta": "x"}', 2))
        await asyncio.sleep(5)

    script.stream = heartbeats_then_silence
    events, error = await _collect(gateway, timeout=10)
    assert [e.WhichOneof("event") for e in events] == ["run_started", "content_delta"]
    assert error is not None
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_STREAM_IDLE"


@pytest.mark.asyncio
async def test_unknown_events_skipped_and_multiline_data(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    script, gateway = scripted

    async def stream(request: web.Request, response: web.StreamResponse) -> None:
        await response.write(_event("run.started", STARTED, 1))
        await response.write(_event("brand.new.event", '{"x": 1}', 2))
        await response.write(
            b'id: 3\r\nevent: content.delta\r\ndata: {"delta":\r\ndata: "hi"}\r\n\r\n'
        )
        await response.write(_event("run.completed", '{"id": "run_1", "content": "hi"}', 4))
        await asyncio.sleep(5)  # the relay must not wait for the end of the HTTP body

    script.stream = stream
    events, error = await _collect(gateway, timeout=3)
    assert error is None
    assert [e.WhichOneof("event") for e in events] == [
        "run_started",
        "content_delta",
        "run_completed",
    ]
    assert events[1].content_delta.delta == "hi"
    assert events[1].event_id == "3"


@pytest.mark.asyncio
async def test_plain_json_answer_is_one_completed_event() -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"id": "run_9", "content": "whole answer", "model": "m"})

    app = web.Application()
    app.router.add_post("/v1/agents/{agent_id}/run", answer)
    async with serving_app(app) as url, serving_gateway(url) as gateway:
        events, error = await _collect(gateway, timeout=5)
    assert error is None
    assert len(events) == 1
    assert events[0].run_completed.content == "whole answer"


@pytest.mark.asyncio
async def test_slow_consumer_does_not_make_the_gateway_buffer(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    """A consumer that stops reading stalls the upstream's writes: buffering is bounded."""
    script, gateway = scripted
    payload = '{"delta": "' + "x" * 1000 + '"}'
    total = 100_000  # ~100 MB if it were all buffered

    async def firehose(request: web.Request, response: web.StreamResponse) -> None:
        await response.write(_event("run.started", STARTED, 1))
        for i in range(total):
            await response.write(_event("content.delta", payload, i + 2))
            script.written = i + 1

    script.stream = firehose
    stream = _scripted_run(gateway, 30)
    first = await anext(stream)
    assert first.HasField("run_started")
    for _ in range(3):  # a slow reader: one message every half second
        await asyncio.sleep(0.5)
        await anext(stream)
    previous, stalled_at = -1, script.written
    for _ in range(20):  # buffers fill, then writes stop: wait for that, at most 10 s
        if stalled_at == previous:
            break
        await asyncio.sleep(0.5)
        previous, stalled_at = stalled_at, script.written
    await asyncio.sleep(1.0)
    assert script.written == stalled_at, "the upstream kept writing while nobody read"
    # What was written before the stall sits mostly in the kernel's loopback socket
    # buffers and the caller's HTTP/2 window, a fixed amount whatever the stream's length.
    assert stalled_at < total // 4, f"{stalled_at} events were buffered somewhere"
    await stream.aclose()
