"""Hostile input from both sides: bytes that are not a request, and answers built to hurt.

Each case was reproduced against the gateway first (UNKNOWN with a traceback, INTERNAL, a
hung watch, an unbounded read, RESOURCE_EXHAUSTED for an oversized status, an OK answer the
client cannot parse); each must now end with a precise status and details.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import agent_pb2, agent_pb2_grpc, execution_pb2, execution_pb2_grpc

from tests.support.harness import RunningGateway, details_of, serving_app, serving_gateway

Answer = Callable[[web.Request], Any]


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[dict[str, Answer], RunningGateway]]:
    """An upstream whose answer per path the test sets; the gateway in front of it."""
    answers: dict[str, Answer] = {}

    async def answer(request: web.Request) -> web.StreamResponse:
        handler = answers.get(request.path)
        if handler is None:
            return web.json_response({"detail": "no script"}, status=404)
        result: web.StreamResponse = await handler(request)
        return result

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with (
        serving_app(app) as url,
        serving_gateway(
            url,
            retry_max_attempts=1,
            max_message_bytes=256 * 1024,
            watch_min_interval=0.02,
            watch_max_interval=0.05,
        ) as gateway,
    ):
        yield answers, gateway


async def _failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


# --------------------------------------------------------------------------- callers


def _raw_struct(depth: int) -> bytes:
    """A Struct nested ``depth`` levels, encoded by hand (the client library would refuse)."""
    struct = b""
    for _ in range(depth):
        value = b"\x2a" + _varint(len(struct)) + struct  # Value.struct_value = 5
        entry = b"\x0a\x01a" + b"\x12" + _varint(len(value)) + value  # key "a", value
        struct = b"\x0a" + _varint(len(entry)) + entry  # Struct.fields (map entry) = 1
    return struct


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "data"),
    [
        pytest.param("GetAgent", b"\xff\xff\xff\xff", id="garbage"),
        pytest.param("GetAgent", b"\x0a\x02\xff\xfe", id="invalid-utf8-string"),
        pytest.param(
            "CreateAgent",
            # CreateAgentRequest.agent (1) → Agent.metadata (6): a Struct 60 levels deep
            (lambda m: b"\x0a" + _varint(len(m)) + m)(
                b"\x32" + _varint(len(_raw_struct(60))) + _raw_struct(60)
            ),
            id="struct-nested-60-deep",
        ),
    ],
)
async def test_request_bytes_that_are_no_message_are_invalid_argument(
    scripted: tuple[dict[str, Answer], RunningGateway], method: str, data: bytes
) -> None:
    _, gateway = scripted
    raw = gateway.channel.unary_unary(
        f"/gagiteck.v1.AgentService/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    error = await _failure(raw(data, timeout=5))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(error)
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert details["BadRequest"].field_violations[0].field == "request"
    assert "Traceback" not in (error.details() or "")


# --------------------------------------------------------------------------- upstreams


@pytest.mark.asyncio
@pytest.mark.parametrize("depth", [40, 150, 2000])
async def test_deeply_nested_answers_are_unreadable_not_internal(
    scripted: tuple[dict[str, Answer], RunningGateway], depth: int
) -> None:
    answers, gateway = scripted

    async def deep(request: web.Request) -> web.Response:
        body = b'{"id": "agent_1", "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth
        return web.Response(body=body + b"}", content_type="application/json")

    answers["/v1/agents/agent_1"] = deep
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    error = await _failure(agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1")))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_BODY_UNREADABLE"


@pytest.mark.asyncio
async def test_a_nested_answer_within_the_limit_reaches_the_client(
    scripted: tuple[dict[str, Answer], RunningGateway],
) -> None:
    answers, gateway = scripted
    metadata = _nested(31)

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"id": "agent_1", "metadata": metadata})

    answers["/v1/agents/agent_1"] = fine
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    agent = await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    assert agent.id == "agent_1"  # the client parsed it


@pytest.mark.asyncio
async def test_a_watch_of_a_deeply_nested_execution_ends_instead_of_hanging(
    scripted: tuple[dict[str, Answer], RunningGateway],
) -> None:
    answers, gateway = scripted

    async def deep(request: web.Request) -> web.Response:
        return web.json_response({"id": "exec_1", "status": "running", "result": _nested(300)})

    answers["/v1/executions/exec_1"] = deep
    executions = execution_pb2_grpc.ExecutionServiceStub(gateway.channel)
    watch = executions.WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id="exec_1"), timeout=20
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in watch:
            pass
    # transient failures end the watch after a few polls, well before its deadline
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_BODY_UNREADABLE"


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e20", "99999999999999999999"])
async def test_hostile_retry_after_values(
    scripted: tuple[dict[str, Answer], RunningGateway], value: str
) -> None:
    answers, gateway = scripted

    async def limited(request: web.Request) -> web.Response:
        return web.json_response(
            {"detail": "slow down"}, status=429, headers={"Retry-After": value}
        )

    answers["/v1/agents/agent_1"] = limited
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    error = await _failure(
        agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = details_of(error).get("RetryInfo")
    if retry is not None:  # a number was read: finite and capped
        assert 0 <= retry.retry_delay.seconds <= 86_400


@pytest.mark.asyncio
async def test_a_huge_error_detail_keeps_its_code(
    scripted: tuple[dict[str, Answer], RunningGateway],
) -> None:
    answers, gateway = scripted

    async def wordy(request: web.Request) -> web.Response:
        return web.json_response({"detail": "bad " * 5000}, status=400)

    answers["/v1/agents/agent_1"] = wordy
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    error = await _failure(
        agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details() or "") <= 1024
    assert (error.details() or "").endswith("…")


@pytest.mark.asyncio
async def test_a_plain_answer_on_a_streaming_route_is_read_within_the_limit(
    scripted: tuple[dict[str, Answer], RunningGateway],
) -> None:
    """64 KiB of gzip that expands to 64 MiB: refused once the limit (four times the message
    limit) is passed, not read whole."""
    answers, gateway = scripted
    bomb = gzip.compress(orjson.dumps({"content": "x" * (64 * 1024 * 1024)}))

    async def plain(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    answers["/v1/agents/agent_1/run"] = plain
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    stream = agents.StreamAgentRun(
        agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi"), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_BODY_TOO_LARGE"
