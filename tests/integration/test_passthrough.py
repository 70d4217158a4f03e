"""Chosen metadata to the upstream and chosen answer headers back (issue 15, item 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import agent_pb2, agent_pb2_grpc, execution_pb2, execution_pb2_grpc

from gateway.config.gateway import load_config
from gateway.config.parsers import ConfigError
from tests.support.harness import RunningGateway, serving_app, serving_gateway

AGENT = {"id": "agent_1", "name": "A", "created_at": "2024-01-15T10:30:00Z"}
EXECUTION = {"id": "exec_1", "workflow_id": "wf_1", "status": "running"}


@dataclass
class Seen:
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[Seen, RunningGateway]]:
    seen = Seen()
    answer_headers = {"X-Tenant-Quota": "17", "X-Internal": "secret", "Set-Cookie": "s=1"}

    async def get_agent(request: web.Request) -> web.StreamResponse:
        seen.requests.append(dict(request.headers))
        return web.json_response(AGENT, headers=answer_headers)

    async def run(request: web.Request) -> web.StreamResponse:
        seen.requests.append(dict(request.headers))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **answer_headers}
        )
        await response.prepare(request)
        await response.write(b'event: run.started\ndata: {"run_id": "r1"}\n\n')
        await response.write(b'event: run.completed\ndata: {"id": "r1", "content": "ok"}\n\n')
        return response

    async def get_execution(request: web.Request) -> web.StreamResponse:
        seen.requests.append(dict(request.headers))
        return web.json_response({**EXECUTION, "status": "completed"})

    app = web.Application()
    app.router.add_get("/v1/agents/{agent_id}", get_agent)
    app.router.add_post("/v1/agents/{agent_id}/run", run)
    app.router.add_get("/v1/executions/{execution_id}", get_execution)
    async with (
        serving_app(app) as url,
        serving_gateway(
            url,
            forward_metadata=("x-tenant-id", "x-feature-flags"),
            return_headers=("x-tenant-quota",),
        ) as gateway,
    ):
        yield seen, gateway


METADATA = (
    ("x-tenant-id", "tenant-42"),
    ("x-feature-flags", "beta"),
    ("x-not-listed", "nope"),
)


def _forwarded(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-")}


@pytest.mark.asyncio
async def test_unary_calls_forward_and_return_the_listed_headers(
    upstream: tuple[Seen, RunningGateway],
) -> None:
    seen, gateway = upstream
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    call = agents.GetAgent(
        agent_pb2.GetAgentRequest(agent_id="agent_1"), metadata=METADATA, timeout=5
    )
    assert (await call).id == "agent_1"
    sent = _forwarded(seen.requests[-1])
    assert sent["x-tenant-id"] == "tenant-42"
    assert sent["x-feature-flags"] == "beta"
    assert "x-not-listed" not in sent
    initial = await call.initial_metadata()
    assert initial.get("x-tenant-quota") == "17"
    assert initial.get("x-internal") is None
    assert initial.get("set-cookie") is None


@pytest.mark.asyncio
async def test_streams_forward_and_return_the_listed_headers(
    upstream: tuple[Seen, RunningGateway],
) -> None:
    seen, gateway = upstream
    agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
    call = agents.StreamAgentRun(
        agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi"),
        metadata=METADATA,
        timeout=5,
    )
    events = [event async for event in call]
    assert [e.WhichOneof("event") for e in events] == ["run_started", "run_completed"]
    assert _forwarded(seen.requests[-1])["x-tenant-id"] == "tenant-42"
    initial = await call.initial_metadata()
    assert initial.get("x-tenant-quota") == "17"
    assert initial.get("x-request-id")


@pytest.mark.asyncio
async def test_watch_polls_forward_the_listed_metadata(
    upstream: tuple[Seen, RunningGateway],
) -> None:
    seen, gateway = upstream
    executions = execution_pb2_grpc.ExecutionServiceStub(gateway.channel)

    async def watch(tenant: str) -> list[Any]:
        call = executions.WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id="exec_1"),
            metadata=(("x-tenant-id", tenant),),
            timeout=5,
        )
        return [state async for state in call]

    await asyncio.gather(watch("tenant-a"), watch("tenant-b"))
    tenants = {_forwarded(r).get("x-tenant-id") for r in seen.requests}
    assert tenants == {"tenant-a", "tenant-b"}  # different metadata: a poller each


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GATEWAY_FORWARD_METADATA": "authorization"}, "writes 'authorization' itself"),
        ({"GATEWAY_FORWARD_METADATA": "transfer-encoding"}, "about the connection"),
        ({"GATEWAY_FORWARD_METADATA": "cookie"}, "GATEWAY_ALLOW_SENSITIVE_HEADERS"),
        ({"GATEWAY_RETURN_HEADERS": "grpc-status"}, "belongs to gRPC"),
        ({"GATEWAY_RETURN_HEADERS": "x bad"}, "not a lower-case header name"),
    ],
)
def test_names_are_checked_at_start(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert says in str(caught.value)


def test_a_sensitive_name_passes_when_allowed() -> None:
    config = load_config(
        {"GATEWAY_FORWARD_METADATA": "Cookie", "GATEWAY_ALLOW_SENSITIVE_HEADERS": "cookie"}
    )
    assert config.forward_metadata == ("cookie",)
