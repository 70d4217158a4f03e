"""``gagiteck-gateway demo``: a sample client that walks through the API over gRPC.

It creates an agent, streams a run of it token by token, builds a two-step workflow,
triggers it and watches the execution advance step by step to its end. Without
``--target`` it starts a gateway and the emulator in this process first, so the demo
works with nothing else running.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import grpc
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from google.protobuf import struct_pb2

from gateway.cli.serve import upstream_for
from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import HostPort
from gateway.server.gateway import Gateway


@contextlib.asynccontextmanager
async def _target(target: str | None) -> AsyncIterator[str]:
    if target is not None:
        yield target
        return
    config = GatewayConfig(listen=HostPort("127.0.0.1", 0), admin_listen=None)
    async with upstream_for(config) as upstream_url:
        gateway = Gateway(config, upstream_url)
        port = await gateway.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await gateway.stop(grace=1, delay=0)


def _say(text: str) -> None:
    print(text, flush=True)


def _status_name(status: execution_pb2.ExecutionStatus.ValueType) -> str:
    return execution_pb2.ExecutionStatus.Name(status).removeprefix("EXECUTION_STATUS_").lower()


async def run_demo(target: str | None, token: str | None) -> int:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with _target(target) as address, grpc.aio.insecure_channel(address) as channel:
        try:
            await _walk_through(channel, metadata, address)
        except grpc.aio.AioRpcError as exc:
            print(f"demo: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


Metadata = tuple[tuple[str, str], ...]


async def _walk_through(channel: grpc.aio.Channel, metadata: Metadata, address: str) -> None:
    _say(f"gateway at {address}\n")
    agents = agent_pb2_grpc.AgentServiceStub(channel)
    agent = await _create_agent(agents, metadata)
    _say(f"1. created agent {agent.id} ({agent.name})")
    _say("2. streaming a run, token by token:")
    await _stream_run(agents, agent.id, metadata)
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    workflow = await _create_workflow(workflows, agent.id, metadata)
    _say(f"3. created workflow {workflow.id} with {len(workflow.steps)} steps")
    execution = await workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(
            workflow_id=workflow.id, input=_struct({"topic": "gRPC gateways"})
        ),
        metadata=metadata,
        timeout=10,
    )
    _say(f"4. triggered execution {execution.id}: {_status_name(execution.status)}")
    execution = await _watch(execution_pb2_grpc.ExecutionServiceStub(channel), execution, metadata)
    _say(f"5. execution {execution.id} ended {_status_name(execution.status)}")
    if execution.error:
        _say(f"   error: {execution.error}")


async def _create_agent(
    agents: agent_pb2_grpc.AgentServiceAsyncStub, metadata: Metadata
) -> agent_pb2.Agent:
    return await agents.CreateAgent(
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(
                name="Research Assistant",
                system_prompt="You are a concise research assistant.",
                config=agent_pb2.AgentConfig(model="claude-3-sonnet", temperature=0.3),
                tools=["calculator"],
            )
        ),
        metadata=metadata,
        timeout=10,
    )


async def _stream_run(
    agents: agent_pb2_grpc.AgentServiceAsyncStub, agent_id: str, metadata: Metadata
) -> None:
    print("   ", end="", flush=True)
    async for event in agents.StreamAgentRun(
        agent_pb2.StreamAgentRunRequest(agent_id=agent_id, message="What is 12 * (3 + 4)?"),
        metadata=metadata,
        timeout=60,
    ):
        kind = event.WhichOneof("event")
        if kind == "content_delta":
            print(event.content_delta.delta, end="", flush=True)
        elif kind == "tool_call":
            call = event.tool_call
            print(f"[tool {call.name} → {_value(call.result)}] ", end="", flush=True)
        elif kind == "usage":
            usage = event.usage
            print(f"\n   usage: {usage.input_tokens} in, {usage.output_tokens} out", flush=True)


async def _create_workflow(
    workflows: workflow_pb2_grpc.WorkflowServiceAsyncStub, agent_id: str, metadata: Metadata
) -> workflow_pb2.Workflow:
    steps = [
        workflow_pb2.WorkflowStep(
            id="greet",
            type="transform",
            name="Greet",
            config=_struct({"template": "Research the topic: {{input.topic}}"}),
        ),
        workflow_pb2.WorkflowStep(
            id="research",
            type="agent",
            name="Research",
            config=_struct({"agent_id": agent_id, "message": "{{greet.output}}"}),
        ),
    ]
    return await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(name="Content pipeline", steps=steps)
        ),
        metadata=metadata,
        timeout=10,
    )


async def _watch(
    executions: execution_pb2_grpc.ExecutionServiceAsyncStub,
    execution: execution_pb2.Execution,
    metadata: Metadata,
) -> execution_pb2.Execution:
    """Follow the execution to its end, printing each step as it finishes."""
    watch = executions.WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=execution.id),
        metadata=metadata,
        timeout=120,
    )
    reported = 0
    async for state in watch:
        for step in state.step_results[reported:]:
            _say(f"   step {step.step_id}: {_status_name(step.status)} → {_value(step.output)}")
        reported = len(state.step_results)
        execution = state
    return execution


def _value(value: struct_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        text = value.string_value
        return text if len(text) <= 60 else text[:57] + "..."
    if kind == "number_value":
        return f"{value.number_value:g}"
    return kind or "null"


def _struct(value: dict[str, str]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
