"""StreamAgentRun: live relay from SSE, failures, cancellation and backpressure.

Two kinds of upstream: the emulator, for runs played out for real (pacing, cancellation,
pools), and a scripted aiohttp upstream whose answer each test sets, for the ways a
stream ends. The scripted endings are one table, ``ENDINGS``: each row is what the
upstream sends and what the caller receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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


async def _collect(call: Any) -> tuple[list[agent_pb2.AgentRunEvent], grpc.aio.AioRpcError | None]:
    """The call's remaining messages, and the error it ended with (None: it ended OK)."""
    events: list[agent_pb2.AgentRunEvent] = []
    try:
        while (event := await call.read()) is not grpc.aio.EOF:
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        return events, exc
    return events, None


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


LONG_MESSAGE = " ".join(["word"] * 200)
"""A message the emulator answers with a run long enough to act on while it plays."""


def _run(stack: Stack, message: str, timeout: float) -> Any:
    request = agent_pb2.StreamAgentRunRequest(agent_id=stack.agent_id, message=message)
    return stack.agents.StreamAgentRun(request, timeout=timeout)


def _requests(emulator: RunningEmulator) -> list[dict[str, str]]:
    return emulator.state.requests.last(500)


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
    call = _run(stack, LONG_MESSAGE, timeout=30)
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
async def test_cancel_of_a_run_opened_with_the_callers_idempotency_key(stack: Stack) -> None:
    """Issue 12, item 8: the cancel POST reused the caller's key, the upstream answered 422
    (a key used for another request) and the run went on."""
    request = agent_pb2.StreamAgentRunRequest(agent_id=stack.agent_id, message=LONG_MESSAGE)
    call = stack.agents.StreamAgentRun(
        request, timeout=30, metadata=(("idempotency-key", "caller-key-stream-1"),)
    )
    first = await call.read()
    assert isinstance(first, agent_pb2.AgentRunEvent)
    run_id = first.run_started.run_id
    call.cancel()

    def cancels() -> list[dict[str, Any]]:
        return [r for r in _requests(stack.emulator) if r["path"].endswith(f"/{run_id}/cancel")]

    assert await _wait_until(lambda: bool(cancels()) and cancels()[-1]["status"] is not None)
    cancel = cancels()[-1]
    assert 200 <= cancel["status"] < 300
    assert cancel["headers"].get("idempotency-key") not in (None, "caller-key-stream-1")


@pytest.mark.asyncio
async def test_deadline_closes_upstream(stack: Stack) -> None:
    _, error = await _collect(_run(stack, LONG_MESSAGE, timeout=0.3))
    assert error is not None
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await _wait_until(lambda: stack.emulator.state.open_streams == 0)


@pytest.mark.asyncio
async def test_error_event_ends_with_matching_status(stack: Stack) -> None:
    """The emulator's own `error` event (its run cancelled through REST) ends the call."""
    call = _run(stack, LONG_MESSAGE, timeout=30)
    first = await call.read()
    run_id = first.run_started.run_id
    async with aiohttp.ClientSession() as session:
        url = f"{stack.emulator.url}/v1/agents/{stack.agent_id}/runs/{run_id}/cancel"
        async with session.post(url) as response:
            assert response.status == 200
    _, error = await _collect(call)
    assert error is not None
    assert error.code() is grpc.StatusCode.CANCELLED
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "CANCELLED"
    assert int(info.metadata["events_relayed"]) >= 1


@pytest.mark.asyncio
async def test_missing_agent_is_not_found(stack: Stack) -> None:
    request = agent_pb2.StreamAgentRunRequest(agent_id="agent_nope", message="hi")
    _, error = await _collect(stack.agents.StreamAgentRun(request, timeout=5))
    assert error is not None
    assert error.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.asyncio
async def test_the_request_id_comes_back_in_the_trailers_of_a_stream(stack: Stack) -> None:
    """docs/consumers.md: the x-request-id is always in the trailers, streams included
    (a relay sent it in its header metadata only, a round of its own before the upstream
    was asked); on success and on an error before the first event alike."""
    request = agent_pb2.StreamAgentRunRequest(agent_id=stack.agent_id, message="hi")
    call = stack.agents.StreamAgentRun(request, timeout=10, metadata=(("x-request-id", "s-1"),))
    events = [event async for event in call]
    assert events[-1].HasField("run_completed")
    assert ("x-request-id", "s-1") in tuple(await call.trailing_metadata() or ())
    missing = agent_pb2.StreamAgentRunRequest(agent_id="agent_nope", message="hi")
    call = stack.agents.StreamAgentRun(missing, timeout=5, metadata=(("x-request-id", "s-2"),))
    _, error = await _collect(call)
    assert error is not None
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "s-2") in tuple(await call.trailing_metadata() or ())


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


# --------------------------------------------------------------------------- scripted SSE


@dataclass(frozen=True)
class Pause:
    """A script step: the upstream writes nothing for a while."""

    seconds: float


class Cut:
    """A script step: the upstream closes the connection, whatever it was writing."""

    def __repr__(self) -> str:
        return "CUT"


CUT = Cut()

Step = bytes | Pause | Cut
"""A script step; bytes are written to the event stream as they are."""


@dataclass(frozen=True)
class PlainJson:
    """An answer that is not an event stream: one ``application/json`` body."""

    body: dict[str, Any]


Answer = tuple[Step, ...] | PlainJson | Stream
"""What the scripted upstream answers a run with: event-stream steps played in order, a
plain JSON body, or a function that writes the event stream itself."""


@dataclass
class Scripted:
    """The scripted upstream: each test sets its ``answer`` before it calls."""

    answer: Answer = ()
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the upstream's handler has finished (its connection closed, or cut)."""


async def _play(
    steps: tuple[Step, ...], request: web.Request, response: web.StreamResponse
) -> None:
    for step in steps:
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, Cut):
            assert request.transport is not None
            request.transport.close()
            return
        else:
            await response.write(step)


IDLE_LIMIT = 0.4
"""The scripted gateway's stream_idle_timeout: the longest silence a stream may keep."""


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, RunningGateway]]:
    script = Scripted()

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        try:
            if isinstance(script.answer, PlainJson):
                return web.json_response(script.answer.body)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            if isinstance(script.answer, tuple):
                await _play(script.answer, request, response)
            else:
                await script.answer(request, response)
            return response
        finally:
            script.done.set()

    app = web.Application()
    app.router.add_post("/v1/agents/{agent_id}/run", answer)
    async with (
        serving_app(app) as url,
        serving_gateway(url, stream_idle_timeout=IDLE_LIMIT) as gateway,
    ):
        yield script, gateway


def _scripted_call(gateway: RunningGateway, timeout: float) -> Any:
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    request = agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi")
    return agents.StreamAgentRun(request, timeout=timeout)


def _event(name: str, data: str, event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


STARTED = '{"run_id": "run_1", "agent_id": "agent_1", "model": "m"}'
RUN_STARTED = _event("run.started", STARTED, 1)
PING = b": ping\n\n"
SILENCE = Pause(10)
"""Longer than the call's deadline: whatever comes after, the relay must not wait for it."""
CALL_TIMEOUT = 5.0

# What the caller receives, as whole messages.
STARTED_MESSAGE = agent_pb2.AgentRunEvent(
    run_started=agent_pb2.RunStarted(run_id="run_1", agent_id="agent_1", model="m"),
    event_id="1",
)


def _delta(text: str, event_id: str) -> agent_pb2.AgentRunEvent:
    return agent_pb2.AgentRunEvent(
        content_delta=agent_pb2.ContentDelta(delta=text), event_id=event_id
    )


def _completed(
    run_id: str, content: str, model: str = "", event_id: str = ""
) -> agent_pb2.AgentRunEvent:
    run = agent_pb2.AgentRun(id=run_id, content=content, model=model)
    return agent_pb2.AgentRunEvent(run_completed=run, event_id=event_id)


@dataclass(frozen=True)
class Receives:
    """What the caller receives: these messages, then the call ends with ``code``.

    ``reason`` and ``metadata`` are checked in the status's ErrorInfo when the code is not
    OK; ``metadata`` lists the entries that must be there (others may be too).
    """

    messages: tuple[agent_pb2.AgentRunEvent, ...]
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

ENDINGS = [
    pytest.param(
        (
            RUN_STARTED,
            _event("brand.new.event", '{"x": 1}', 2),
            b'id: 3\r\nevent: content.delta\r\ndata: {"delta":\r\ndata: "hi"}\r\n\r\n',
            _event("run.completed", '{"id": "run_1", "content": "hi"}', 4),
            SILENCE,  # the relay must not wait for the end of the HTTP body
        ),
        Receives((STARTED_MESSAGE, _delta("hi", "3"), _completed("run_1", "hi", event_id="4"))),
        id="unknown-events-skipped-and-multiline-data",
    ),
    pytest.param(
        PlainJson({"id": "run_9", "content": "whole answer", "model": "m"}),
        Receives((_completed("run_9", "whole answer", model="m"),)),
        id="plain-json-answer-is-one-completed-event",
    ),
    pytest.param(
        (
            RUN_STARTED,
            _event("content.delta", '{"delta": "a"}', 2),
            b'event: content.delta\ndata: {"del',
            CUT,  # mid-event, and mid-chunk of the HTTP body: a truncated body
        ),
        Receives(
            (STARTED_MESSAGE, _delta("a", "2")),
            UNAVAILABLE,
            "UPSTREAM_BODY_TRUNCATED",
            {"events_relayed": "2"},
        ),
        id="cut-mid-event-is-unavailable-with-count",
    ),
    pytest.param(
        (RUN_STARTED,),
        Receives((STARTED_MESSAGE,), UNAVAILABLE, "UPSTREAM_STREAM_CUT", {"events_relayed": "1"}),
        id="clean-end-without-completion-is-unavailable",
    ),
    pytest.param(
        (
            RUN_STARTED,
            *(Pause(0.1), PING) * 8,  # 0.8 s of heartbeats, twice the idle limit
            _event("content.delta", '{"delta": "x"}', 2),
            SILENCE,
        ),
        Receives(
            (STARTED_MESSAGE, _delta("x", "2")),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "UPSTREAM_STREAM_IDLE",
            {"events_relayed": "2"},
        ),
        id="idle-stream-is-deadline-exceeded-but-heartbeats-keep-it",
    ),
    pytest.param(
        (
            RUN_STARTED,
            _event("error", '{"detail": "cancelled", "code": "CANCELLED", "status": 499}', 2),
            SILENCE,
        ),
        Receives(
            (STARTED_MESSAGE,),
            grpc.StatusCode.CANCELLED,
            "CANCELLED",
            {
                "events_relayed": "1",
                "http_status": "499",
                "upstream_code": "CANCELLED",
                "stream_event": "error",
            },
        ),
        id="error-event-499-is-cancelled",
    ),
    pytest.param(
        (
            RUN_STARTED,
            _event("error", '{"detail": "busy", "code": "MODEL_OVERLOADED", "status": 503}', 2),
            SILENCE,
        ),
        Receives(
            (STARTED_MESSAGE,),
            UNAVAILABLE,
            "MODEL_OVERLOADED",
            {"events_relayed": "1", "http_status": "503", "upstream_code": "MODEL_OVERLOADED"},
        ),
        id="error-event-reason-is-its-code",
    ),
    pytest.param(
        (RUN_STARTED, _event("error", '{"detail": "boom"}', 2), SILENCE),
        Receives(
            (STARTED_MESSAGE,),
            UNAVAILABLE,
            "BAD_GATEWAY",
            {"events_relayed": "1", "http_status": "502"},
        ),
        id="error-event-without-status-is-bad-gateway",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("sends", "receives"), ENDINGS)
async def test_how_a_scripted_stream_ends(
    scripted: tuple[Scripted, RunningGateway], sends: Answer, receives: Receives
) -> None:
    """Each row: what the upstream sends, and the messages and status the caller gets."""
    script, gateway = scripted
    script.answer = sends
    events, error = await _collect(_scripted_call(gateway, timeout=CALL_TIMEOUT))
    assert tuple(events) == receives.messages
    if receives.code is grpc.StatusCode.OK:
        assert error is None
    else:
        assert error is not None
        assert error.code() is receives.code
        info = details_of(error)["ErrorInfo"]
        assert info.reason == receives.reason
        assert {key: info.metadata.get(key) for key in receives.metadata} == receives.metadata
    # however the call ended, the upstream's connection is let go, not kept to SILENCE's end
    assert await _wait_until(script.done.is_set)


@pytest.mark.asyncio
async def test_slow_consumer_does_not_make_the_gateway_buffer(
    scripted: tuple[Scripted, RunningGateway],
) -> None:
    """A consumer that stops reading stalls the upstream's writes: buffering is bounded."""
    script, gateway = scripted
    payload = '{"delta": "' + "x" * 1000 + '"}'
    total = 100_000  # ~100 MB if it were all buffered
    written = 0

    async def firehose(request: web.Request, response: web.StreamResponse) -> None:
        nonlocal written
        await response.write(RUN_STARTED)
        for i in range(total):
            await response.write(_event("content.delta", payload, i + 2))
            written = i + 1

    script.answer = firehose
    stream = _scripted_call(gateway, 30).__aiter__()
    first = await anext(stream)
    assert first.HasField("run_started")
    for _ in range(3):  # a slow reader: one message every half second
        await asyncio.sleep(0.5)
        await anext(stream)
    previous, stalled_at = -1, written
    for _ in range(20):  # buffers fill, then writes stop: wait for that, at most 10 s
        if stalled_at == previous:
            break
        await asyncio.sleep(0.5)
        previous, stalled_at = stalled_at, written
    await asyncio.sleep(1.0)
    assert written == stalled_at, "the upstream kept writing while nobody read"
    # What was written before the stall sits mostly in the kernel's loopback socket
    # buffers and the caller's HTTP/2 window, a fixed amount whatever the stream's length.
    assert stalled_at < total // 4, f"{stalled_at} events were buffered somewhere"
    await stream.aclose()


# --------------------------------------------------------------------------- retries

COMPLETED_EVENT = _event("run.completed", '{"id": "run_1", "content": "done", "model": "m"}', 2)


@dataclass
class Flaky:
    """An upstream whose first ``failures`` openings fail as ``how``, then play a run."""

    how: str
    failures: int = 1
    seen: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, RunningGateway]]:
    script = Flaky("503")

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        script.seen.append(request.headers.get("Idempotency-Key", ""))
        failing = len(script.seen) <= script.failures
        if failing and script.how in ("503", "400"):
            return web.json_response({"detail": "no"}, status=int(script.how))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if failing and script.how == "cut-before":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(RUN_STARTED)
        if failing and script.how == "cut-after":
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(COMPLETED_EVENT)
        return response

    app = web.Application()
    app.router.add_post("/v1/agents/{agent_id}/run", answer)
    async with serving_app(app) as url, serving_gateway(url, retry_base=0.01) as gateway:
        yield script, gateway


@pytest.mark.parametrize("how", ["503"])
@pytest.mark.asyncio
async def test_a_stream_that_fails_before_its_first_event_is_opened_again(
    flaky: tuple[Flaky, RunningGateway], how: str
) -> None:
    """Issue 15, item 2: a stream made one attempt; a 503 before any event ended it."""
    script, gateway = flaky
    script.how = how
    events, error = await _collect(_scripted_call(gateway, CALL_TIMEOUT))
    assert error is None
    assert [e.WhichOneof("event") for e in events] == ["run_started", "run_completed"]
    assert len(script.seen) == 2
    assert script.seen[0]
    assert script.seen[0] == script.seen[1]  # one idempotency key for both openings
    scraped = gateway.gateway.telemetry.metrics.render().decode()
    retries = [
        line for line in scraped.splitlines() if line.startswith("gateway_upstream_retries_total")
    ]
    assert retries
    assert any(line.endswith(" 1.0") for line in retries), retries  # the opening counted


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("cut-after", grpc.StatusCode.UNAVAILABLE),
        # the run may have started upstream: opening it again would conflict with it
        ("cut-before", grpc.StatusCode.UNAVAILABLE),
        ("400", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
@pytest.mark.asyncio
async def test_a_stream_is_never_repeated_after_an_event_or_on_a_final_failure(
    flaky: tuple[Flaky, RunningGateway], how: str, code: grpc.StatusCode
) -> None:
    script, gateway = flaky
    script.how = how
    events, error = await _collect(_scripted_call(gateway, CALL_TIMEOUT))
    assert error is not None
    assert error.code() is code
    assert len(script.seen) == 1
    assert len(events) == (1 if how == "cut-after" else 0)


@pytest.mark.asyncio
async def test_stream_retries_stop_at_the_attempts_limit(
    flaky: tuple[Flaky, RunningGateway],
) -> None:
    script, gateway = flaky
    script.failures = 10
    events, error = await _collect(_scripted_call(gateway, CALL_TIMEOUT))
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].metadata["attempts"] == "3"
    assert len(script.seen) == 3
    assert events == []
