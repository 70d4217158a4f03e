"""``gagiteck-gateway demo``: a sample client that walks through the API over gRPC.

It creates an agent, runs it, builds a two-step workflow, triggers it and follows the
execution to its end. Without ``--target`` it starts a gateway and the emulator in this
process first, so the demo works with nothing else running.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Final

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

from gateway.config import GatewayConfig, HostPort

TERMINAL: Final = frozenset(
    {
        execution_pb2.EXECUTION_STATUS_COMPLETED,
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    }
)


@contextlib.asynccontextmanager
async def _target(target: str | None) -> AsyncIterator[str]:
    if target is not None:
        yield target
        return
    from gateway.cli import upstream_for
    from gateway.server import Gateway

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


async def _walk_through(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], address: str
) -> None:
    agents = agent_pb2_grpc.AgentServiceStub(channel)
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    executions = execution_pb2_grpc.ExecutionServiceStub(channel)
    _say(f"gateway at {address}\n")

    agent = await agents.CreateAgent(
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
    _say(f"1. created agent {agent.id} ({agent.name})")

    run = await agents.RunAgent(
        agent_pb2.RunAgentRequest(agent_id=agent.id, message="What is 12 * (3 + 4)?"),
        metadata=metadata,
        timeout=30,
    )
    _say(f"2. ran it: {run.content}")
    for call in run.tool_calls:
        _say(f"   tool {call.name} → {call.result}")
    _say(f"   usage: {run.usage.input_tokens} in, {run.usage.output_tokens} out")

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
            config=_struct({"agent_id": agent.id, "message": "{{greet.output}}"}),
        ),
    ]
    workflow = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(name="Content pipeline", steps=steps)
        ),
        metadata=metadata,
        timeout=10,
    )
    _say(f"3. created workflow {workflow.id} with {len(workflow.steps)} steps")

    execution = await workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(
            workflow_id=workflow.id, input=_struct({"topic": "gRPC gateways"})
        ),
        metadata=metadata,
        timeout=10,
    )
    _say(f"4. triggered execution {execution.id}: {_status_name(execution.status)}")
    seen_steps = 0
    for _ in range(600):
        execution = await executions.GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=execution.id),
            metadata=metadata,
            timeout=10,
        )
        for step in execution.step_results[seen_steps:]:
            _say(f"   step {step.step_id}: {_status_name(step.status)}")
        seen_steps = len(execution.step_results)
        if execution.status in TERMINAL:
            break
        await asyncio.sleep(0.1)
    _say(f"5. execution {execution.id} ended {_status_name(execution.status)}")
    if execution.error:
        _say(f"   error: {execution.error}")


def _struct(value: dict[str, str]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
