"""WatchExecution: one poller per execution, distinct states, terminal states end it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from gagiteck.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from google.protobuf import struct_pb2

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.support.harness import RunningGateway, serving_gateway

Status = execution_pb2.ExecutionStatus
TERMINAL = {
    execution_pb2.EXECUTION_STATUS_COMPLETED,
    execution_pb2.EXECUTION_STATUS_FAILED,
    execution_pb2.EXECUTION_STATUS_CANCELLED,
}


@dataclass
class Stack:
    emulator: RunningEmulator
    gateway: RunningGateway
    workflows: workflow_pb2_grpc.WorkflowServiceAsyncStub
    executions: execution_pb2_grpc.ExecutionServiceAsyncStub
    workflow_id: str


def _struct(**values: str) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    config = EmulatorConfig(open_mode=True, step_delay_seconds=0.15)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(
            emulator.url, watch_min_interval=0.03, watch_max_interval=0.2, caller_max_streams=0
        ) as gateway,
    ):
        workflows = workflow_pb2_grpc.WorkflowServiceStub(gateway.channel)
        steps = [
            workflow_pb2.WorkflowStep(
                id=f"s{i}", type="transform", name=f"Step {i}", config=_struct(template=f"{i}")
            )
            for i in range(1, 5)
        ]
        workflow = await workflows.CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(
                workflow=workflow_pb2.Workflow(name="four steps", steps=steps)
            ),
            timeout=5,
        )
        executions = execution_pb2_grpc.ExecutionServiceStub(gateway.channel)
        yield Stack(emulator, gateway, workflows, executions, workflow.id)


async def _trigger(stack: Stack, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    execution = await stack.workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(workflow_id=stack.workflow_id, input=_struct(x="1")),
        metadata=metadata,
        timeout=5,
    )
    return execution.id


async def _watch(
    stack: Stack, execution_id: str, metadata: tuple[tuple[str, str], ...] = ()
) -> list[execution_pb2.Execution]:
    request = execution_pb2.WatchExecutionRequest(execution_id=execution_id)
    return [
        state
        async for state in stack.executions.WatchExecution(request, metadata=metadata, timeout=10)
    ]


def _gets(emulator: RunningEmulator, execution_id: str) -> int:
    return sum(
        1
        for r in emulator.state.requests.last(10_000)
        if r["method"] == "GET" and r["path"] == f"/v1/executions/{execution_id}"
    )


@pytest.mark.asyncio
async def test_watch_follows_steps_to_the_end(stack: Stack) -> None:
    states = await _watch(stack, await _trigger(stack))
    assert states[-1].status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert all(s.status not in TERMINAL for s in states[:-1])
    assert len(states[-1].step_results) == 4
    step_counts = [len(s.step_results) for s in states]
    assert step_counts == sorted(step_counts)
    assert len(set(step_counts)) >= 3, f"steps were not followed: {step_counts}"
    serialized = [s.SerializeToString(deterministic=True) for s in states]
    assert all(a != b for a, b in itertools.pairwise(serialized))


@pytest.mark.asyncio
async def test_a_finished_execution_is_sent_once(stack: Stack) -> None:
    execution_id = await _trigger(stack)
    await _watch(stack, execution_id)
    states = await _watch(stack, execution_id)
    assert len(states) == 1
    assert states[0].status == execution_pb2.EXECUTION_STATUS_COMPLETED


@pytest.mark.asyncio
async def test_hundred_watchers_share_one_poller(stack: Stack) -> None:
    steps = [
        workflow_pb2.WorkflowStep(id=f"s{i}", type="transform", config=_struct(template="x"))
        for i in range(12)  # about 1.8 s: time for every watcher to join on a busy machine
    ]
    workflow = await stack.workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(workflow=workflow_pb2.Workflow(name="w", steps=steps)),
        timeout=5,
    )
    execution = await stack.workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id), timeout=5
    )
    execution_id = execution.id
    watchers = [asyncio.ensure_future(_watch(stack, execution_id)) for _ in range(100)]
    hub = stack.gateway.gateway.watches
    for _ in range(150):  # until all 100 have joined, at most 1.5 s
        if hub.pollers and len(hub.pollers[0].watchers) == 100:
            break
        await asyncio.sleep(0.01)
    assert len(hub.pollers) == 1
    poller = hub.pollers[0]
    assert len(poller.watchers) == 100
    results = await asyncio.gather(*watchers)
    assert all(r[-1].status == execution_pb2.EXECUTION_STATUS_COMPLETED for r in results)
    assert _gets(stack.emulator, execution_id) == poller.polls
    assert poller.polls < 60, f"{poller.polls} polls for a run of about 1.8 s"
    assert hub.pollers == []


@pytest.mark.asyncio
async def test_cancelled_execution_ends_the_watch(stack: Stack) -> None:
    execution_id = await _trigger(stack)
    watch = asyncio.ensure_future(_watch(stack, execution_id))
    await asyncio.sleep(0.2)
    await stack.executions.CancelExecution(
        execution_pb2.CancelExecutionRequest(execution_id=execution_id), timeout=5
    )
    states = await watch
    assert states[-1].status == execution_pb2.EXECUTION_STATUS_CANCELLED


@pytest.mark.asyncio
async def test_missing_execution_is_not_found(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _watch(stack, "exec_missing")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert stack.gateway.gateway.watches.pollers == []


@pytest.mark.asyncio
async def test_credentials_never_share_a_poller(stack: Stack) -> None:
    auth = auth_pb2_grpc.AuthServiceStub(stack.gateway.channel)
    tokens = []
    for name in ("ann", "bob"):
        email = f"{name}@example.com"
        await auth.SignUp(
            auth_pb2.SignUpRequest(email=email, password="password-123", name=name), timeout=5
        )
        login = await auth.Login(
            auth_pb2.LoginRequest(email=email, password="password-123"), timeout=5
        )
        tokens.append((("authorization", f"Bearer {login.access_token}"),))
    ann, bob = tokens
    workflows = stack.workflows
    workflow = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(
                name="ann's",
                steps=[workflow_pb2.WorkflowStep(id="a", type="delay", config=_struct())],
            )
        ),
        metadata=ann,
        timeout=5,
    )
    execution = await workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id), metadata=ann, timeout=5
    )
    mine = asyncio.ensure_future(_watch(stack, execution.id, ann))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _watch(stack, execution.id, bob)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # bob cannot see ann's execution
    assert (await mine)[-1].status == execution_pb2.EXECUTION_STATUS_COMPLETED
