"""Health, reflection, message limits and graceful shutdown, seen from clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.emulator import EmulatorConfig, running_emulator
from tests.support.harness import details_of, serving_app, serving_gateway

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest_asyncio.fixture
async def slow_upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("sleep", "0.5")))
        return web.json_response({"data": [], "total": 0, "limit": 20, "offset": 0})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving_app(app) as url:
        yield url


@pytest.mark.asyncio
async def test_health_overall_and_per_service(slow_upstream: str) -> None:
    async with serving_gateway(slow_upstream) as running:
        health: Any = health_pb2_grpc.HealthStub(running.channel)
        for service in ("", "gagiteck.v1.AgentService", "gagiteck.v1.AccessService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def _list_services(channel: grpc.aio.Channel, method: str) -> set[str]:
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for reply in call(requests(), timeout=5):
        names.update(s.name for s in reply.list_services_response.service)
    return names


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
@pytest.mark.asyncio
async def test_reflection_lists_every_service(slow_upstream: str, version: str) -> None:
    async with serving_gateway(slow_upstream) as running:
        method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
        names = await _list_services(running.channel, method)
    expected = {
        f"gagiteck.v1.{name}"
        for name in (
            "AgentService",
            "WorkflowService",
            "ExecutionService",
            "AuthService",
            "WebhookService",
            "SearchService",
            "AccessService",
        )
    }
    assert expected <= names
    assert "grpc.health.v1.Health" in names


@pytest.mark.asyncio
async def test_reflection_describes_a_file(slow_upstream: str) -> None:
    async with serving_gateway(slow_upstream) as running:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(running.channel)  # type: ignore[arg-type]

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="gagiteck.v1.AgentService"
            )

        replies = [r async for r in stub.ServerReflectionInfo(requests(), timeout=5)]
    assert replies[0].file_descriptor_response.file_descriptor_proto


@pytest.mark.asyncio
async def test_oversized_message_is_refused(slow_upstream: str) -> None:
    async with serving_gateway(slow_upstream, max_message_bytes=2048) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)
        request = agent_pb2.RunAgentRequest(agent_id="a", message="x" * 4096)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RunAgent(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.asyncio
async def test_graceful_shutdown_finishes_in_flight_calls(slow_upstream: str) -> None:
    async with serving_gateway(slow_upstream) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)
        health: Any = health_pb2_grpc.HealthStub(running.channel)
        in_flight = asyncio.ensure_future(
            stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10)
        )
        await asyncio.sleep(0.2)  # the call is now waiting on the upstream
        stopping = asyncio.ensure_future(running.gateway.stop(grace=5, delay=0.3))
        await asyncio.sleep(0.05)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == NOT_SERVING
        result = await in_flight
        assert result.total == 0
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=2)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert running.gateway.state.value == "closed"
        await running.gateway.stop()  # safe twice


@pytest.mark.asyncio
async def test_drain_ends_streams_and_watches_at_once_with_unavailable() -> None:
    """Issue 12, item 13: a stop waited the whole grace while a stream or a watch was open.
    Now both end at drain start with UNAVAILABLE (GATEWAY_DRAINING, RetryInfo 0), the
    abandoned run is cancelled upstream, and the stop does not wait for the grace."""
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.05, step_delay_seconds=5.0)
    async with running_emulator(config) as emulator, serving_gateway(emulator.url) as running:
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        agent = await agents.CreateAgent(
            agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Long", system_prompt="s")),
            timeout=5,
        )
        workflows = workflow_pb2_grpc.WorkflowServiceStub(running.channel)
        step = workflow_pb2.WorkflowStep(id="s1", type="transform", name="Slow")
        workflow = await workflows.CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(
                workflow=workflow_pb2.Workflow(name="w", steps=[step])
            ),
            timeout=5,
        )
        execution = await workflows.TriggerWorkflow(
            workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id), timeout=5
        )
        stream = agents.StreamAgentRun(
            agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message=" ".join(["w"] * 400)),
            timeout=60,
        )
        first = await stream.read()
        assert isinstance(first, agent_pb2.AgentRunEvent)
        run_id = first.run_started.run_id
        executions = execution_pb2_grpc.ExecutionServiceStub(running.channel)
        watch = executions.WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=execution.id), timeout=60
        )
        await watch.read()  # the first snapshot: the watch is open
        grace = 60.0
        stopping = asyncio.ensure_future(running.gateway.stop(grace=grace, delay=0))
        for call in (stream, watch):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _read_to_the_end(call)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            found = details_of(caught.value)
            assert found["ErrorInfo"].reason == "GATEWAY_DRAINING"
            assert found["RetryInfo"].retry_delay.ToTimedelta().total_seconds() == 0
        # the stop finishes with the cancel POST, well inside the grace it was given
        await asyncio.wait_for(stopping, timeout=grace / 4)
        cancels = [r for r in emulator.state.requests.last(200) if r["path"].endswith("/cancel")]
        assert any(run_id in r["path"] for r in cancels)


async def _read_to_the_end(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


@pytest.mark.asyncio
async def test_calls_refused_before_a_handler_leave_an_access_line_and_a_metric(
    slow_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: undecodable, oversized and unknown-method calls left no trace."""
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with serving_gateway(slow_upstream, max_message_bytes=2048) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await stub.RunAgent(agent_pb2.RunAgentRequest(agent_id="a", message="x" * 3000))
        assert big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details_of(big.value)["ErrorInfo"].reason == "MESSAGE_TOO_LARGE"
        unknown: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = running.channel.unary_unary(
            "/gagiteck.v1.AgentService/Nope"
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await unknown(b"", timeout=5)
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert details_of(missing.value)["ErrorInfo"].reason == "UNKNOWN_METHOD"
        scraped = running.gateway.telemetry.metrics.render().decode()
    lines = [(r.method, r.code) for r in caplog.records if r.name == "gateway.access"]  # type: ignore[attr-defined]
    assert ("gagiteck.v1.AgentService/RunAgent", "RESOURCE_EXHAUSTED") in lines
    assert ("gagiteck.v1.AgentService/Nope", "UNIMPLEMENTED") in lines
    assert 'method="unknown"' in scraped
    assert 'code="UNIMPLEMENTED"' in scraped


@pytest.mark.asyncio
async def test_reflection_finds_the_file_of_a_method(slow_upstream: str) -> None:
    """Issue 13: `grpcurl describe gagiteck.v1.AgentService.RunAgent` said "Symbol not found"."""
    async with serving_gateway(slow_upstream) as running:
        call = running.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            for symbol in ("gagiteck.v1.AgentService.RunAgent", "gagiteck.v1.AgentService.Nope"):
                yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)

        replies = [reply async for reply in call(requests(), timeout=5)]
    assert replies[0].HasField("file_descriptor_response")
    assert replies[1].HasField("error_response")


@pytest.mark.asyncio
async def test_connections_are_asked_to_reconnect_after_their_maximum_age(
    slow_upstream: str,
) -> None:
    """Clients balancing over DNS find new pods only when a connection ends."""
    async with serving_gateway(slow_upstream, max_connection_age=0.3, shutdown_grace=1.0) as run:
        health: Any = health_pb2_grpc.HealthStub(run.channel)
        await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        states: list[grpc.ChannelConnectivity] = []
        for _ in range(40):  # the GOAWAY makes the channel leave READY, then reconnect
            states.append(run.channel.get_state())
            await asyncio.sleep(0.05)
        assert any(state is not grpc.ChannelConnectivity.READY for state in states)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == SERVING
