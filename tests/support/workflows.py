"""A workflow execution that takes a while in the emulator, for the tests that watch one."""

from __future__ import annotations

import grpc
from gagiteck.v1 import workflow_pb2, workflow_pb2_grpc
from google.protobuf import struct_pb2


async def triggered_execution(channel: grpc.aio.Channel, steps: int) -> str:
    """Create a workflow of ``steps`` transform steps, trigger it; the execution's id."""
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    step_config = struct_pb2.Struct()
    step_config.update({"template": "x"})
    workflow = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(
                name="w",
                steps=[
                    workflow_pb2.WorkflowStep(id=f"s{i}", type="transform", config=step_config)
                    for i in range(steps)
                ],
            )
        ),
        timeout=5,
    )
    execution = await workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id), timeout=5
    )
    return str(execution.id)
