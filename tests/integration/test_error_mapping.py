"""The error boundary, checked from a client: every upstream answer → code and details."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from tests.support.harness import RunningGateway, details_of, serving_app, serving_gateway


@dataclass
class Script:
    """What the scripted upstream answers next, and what it saw."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[web.Request] = field(default_factory=list)
    delay: float = 0.0
    aborted: asyncio.Event = field(default_factory=asyncio.Event)


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[Script, RunningGateway]]:
    script = Script()

    async def answer(request: web.Request) -> web.Response:
        script.seen.append(request)
        if script.delay:
            try:
                await asyncio.sleep(script.delay)
            except asyncio.CancelledError:  # the client went away mid-request
                script.aborted.set()
                raise
        return web.Response(
            status=script.status,
            body=script.body,
            headers={"Content-Type": script.content_type, **script.headers},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving_app(app) as url, serving_gateway(url) as running:
        yield script, running


def _stub(running: RunningGateway) -> agent_pb2_grpc.AgentServiceAsyncStub:
    return agent_pb2_grpc.AgentServiceStub(running.channel)


DOCUMENTED = b'{"detail": "Agent not found", "code": "NOT_FOUND", "status": 404}'
FASTAPI_422 = (
    b'{"detail": [{"loc": ["body", "config", "temperature"], "msg": "Input should be '
    b'less than or equal to 2", "type": "less_than_equal"}, {"loc": ["query", "limit"], '
    b'"msg": "too big", "type": "x"}]}'
)


@pytest.mark.parametrize(
    ("status", "body", "code", "reason"),
    [
        (
            400,
            b'{"detail": "bad", "code": "BAD_REQUEST", "status": 400}',
            grpc.StatusCode.INVALID_ARGUMENT,
            "BAD_REQUEST",
        ),
        (
            401,
            b'{"detail": "no", "code": "UNAUTHORIZED", "status": 401}',
            grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHORIZED",
        ),
        (
            403,
            b'{"detail": "no", "code": "FORBIDDEN", "status": 403}',
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        ),
        (404, DOCUMENTED, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (
            409,
            b'{"detail": "Email already registered", "code": "CONFLICT"}',
            grpc.StatusCode.ALREADY_EXISTS,
            "CONFLICT",
        ),
        (
            409,
            b'{"detail": "Execution exec_1 is already completed", "code": "CONFLICT"}',
            grpc.StatusCode.ABORTED,
            "CONFLICT",
        ),
        (422, FASTAPI_422, grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED"),
        (
            429,
            b'{"detail": "slow down", "code": "RATE_LIMITED", "status": 429}',
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        ),
        (499, b"", grpc.StatusCode.CANCELLED, "HTTP_499"),
        (
            500,
            b'{"detail": "boom", "code": "INTERNAL_ERROR"}',
            grpc.StatusCode.INTERNAL,
            "INTERNAL_ERROR",
        ),
        (501, b"", grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED"),
        (502, b"<html>bad gateway</html>", grpc.StatusCode.UNAVAILABLE, "BAD_GATEWAY"),
        (503, b"{}", grpc.StatusCode.UNAVAILABLE, "SERVICE_UNAVAILABLE"),
        (504, b"", grpc.StatusCode.DEADLINE_EXCEEDED, "GATEWAY_TIMEOUT"),
        (418, b"", grpc.StatusCode.FAILED_PRECONDITION, "HTTP_418"),
        (302, b"", grpc.StatusCode.INTERNAL, "HTTP_302"),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else None,
)
@pytest.mark.asyncio
async def test_http_status_table(
    scripted: tuple[Script, RunningGateway],
    status: int,
    body: bytes,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    script, running = scripted
    script.status, script.body = status, body
    if status == 302:
        script.headers = {"Location": "http://127.0.0.1:9/elsewhere"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(
            agent_pb2.GetAgentRequest(agent_id="agent_1"),
            metadata=(("x-request-id", "req-123"),),
            timeout=5,
        )
    error = caught.value
    assert error.code() is code
    details = details_of(error)
    info = details["ErrorInfo"]
    assert info.reason == reason
    assert info.domain == "127.0.0.1"
    assert info.metadata["http_status"] == str(status)
    assert details["RequestInfo"].request_id == "req-123"
    # GET is safe to repeat: 429, 502, 503 and 504 are retried (3 attempts by default);
    # nothing else is, and redirects are not followed.
    attempts = 3 if status in (429, 502, 503, 504) else 1
    assert len(script.seen) == attempts
    if attempts > 1:
        assert info.metadata["attempts"] == "3"


@pytest.mark.asyncio
async def test_fastapi_validation_becomes_field_violations(
    scripted: tuple[Script, RunningGateway],
) -> None:
    script, running = scripted
    script.status, script.body = 422, FASTAPI_422
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
    violations = details_of(caught.value)["BadRequest"].field_violations
    assert [(v.field, v.description) for v in violations] == [
        ("config.temperature", "Input should be less than or equal to 2"),
        ("limit", "too big"),
    ]
    assert "config.temperature" in (caught.value.details() or "")


@pytest.mark.asyncio
async def test_rate_limit_carries_retry_and_quota(
    scripted: tuple[Script, RunningGateway],
) -> None:
    script, running = scripted
    script.status = 429
    script.body = b'{"detail": "Too many requests", "code": "RATE_LIMITED", "status": 429}'
    script.headers = {"Retry-After": "7", "X-RateLimit-Remaining": "0"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
    details = details_of(caught.value)
    assert details["RetryInfo"].retry_delay.seconds == 7
    assert details["QuotaFailure"].violations[0].description == "Too many requests"


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("text/html", b"<html><body>Login</body></html>", "HTML page"),
        ("application/json", b'{"id": "agent_1", "name": "trunc', "truncated JSON"),
        ("text/plain", b"hello", "text/plain"),
    ],
    ids=["html", "truncated", "plain"],
)
@pytest.mark.asyncio
async def test_unreadable_success_bodies(
    scripted: tuple[Script, RunningGateway], content_type: str, body: bytes, says: str
) -> None:
    script, running = scripted
    script.content_type, script.body = content_type, body
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert says in (caught.value.details() or "")
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_BODY_UNREADABLE"


@pytest.mark.asyncio
async def test_deadline_becomes_upstream_timeout(
    scripted: tuple[Script, RunningGateway],
) -> None:
    script, running = scripted
    script.delay = 2.0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=0.3)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.asyncio
async def test_dead_upstream_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with serving_gateway(f"http://127.0.0.1:{port}") as running:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_UNREACHABLE"


@pytest.mark.asyncio
async def test_invalid_id_sends_nothing(scripted: tuple[Script, RunningGateway]) -> None:
    script, running = scripted
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a/b"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violation = details_of(caught.value)["BadRequest"].field_violations[0]
    assert violation.field == "agent_id"
    assert script.seen == []


@pytest.mark.asyncio
async def test_metadata_forwarded_and_request_id_returned(
    scripted: tuple[Script, RunningGateway],
) -> None:
    script, running = scripted
    script.body = b'{"id": "agent_1"}'
    call = _stub(running).GetAgent(
        agent_pb2.GetAgentRequest(agent_id="agent_1"),
        metadata=(("authorization", "Bearer ggt_secret"), ("x-request-id", "abc-1")),
        timeout=5,
    )
    agent = await call
    assert agent.id == "agent_1"
    seen = script.seen[0]
    assert seen.headers["Authorization"] == "Bearer ggt_secret"
    assert seen.headers["X-Request-ID"] == "abc-1"
    assert ("x-request-id", "abc-1") in tuple(await call.trailing_metadata() or ())


@pytest.mark.asyncio
async def test_request_id_generated_when_absent(scripted: tuple[Script, RunningGateway]) -> None:
    script, running = scripted
    call = _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    await call
    sent = script.seen[0].headers["X-Request-ID"]
    assert len(sent) == 32
    assert ("x-request-id", sent) in tuple(await call.trailing_metadata() or ())
    assert "Authorization" not in script.seen[0].headers


@pytest.mark.asyncio
async def test_cancelled_call_aborts_its_http_request(
    scripted: tuple[Script, RunningGateway],
) -> None:
    script, running = scripted
    script.delay = 10.0
    call = _stub(running).GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=30)
    for _ in range(300):
        if script.seen:
            break
        await asyncio.sleep(0.01)
    assert script.seen, "the request never reached the upstream"
    call.cancel()
    await asyncio.wait_for(script.aborted.wait(), timeout=5)
