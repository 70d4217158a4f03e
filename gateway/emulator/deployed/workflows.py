"""Workflows in the deployed dialect.

Steps are `{id, name, agent_id, action, input_template, depends_on, condition,
timeout_ms}` (ids need not be unique); `triggers` is a list of objects.
`status` is always `active`. An update replaces whatever it names (steps,
triggers, metadata whole). A trigger records a run that answers `running` and
stays so: the service starts nothing, so the emulator runs no step either, and
the run never appears under /v1/executions.
"""

from __future__ import annotations

from typing import Any

from ..clock import utcnow
from ..ids import new_id
from .data import DeployedWorkflow, WorkflowRun
from .operations import Call, not_found, page

_UPDATABLE = ("name", "description", "steps", "triggers", "metadata")


def _workflow(call: Call) -> DeployedWorkflow:
    workflow = call.state.deployed.workflows.get(call.path["workflow_id"])
    if workflow is None:
        raise not_found("Workflow")
    return workflow


async def list_workflows(call: Call) -> Any:
    state = call.state
    rendered = [flow.to_json(state.style) for flow in state.deployed.workflows.values()]
    return page(rendered, call.query)


async def create_workflow(call: Call) -> Any:
    state, body = call.state, call.body
    workflow = DeployedWorkflow(
        new_id("wf"),
        body["name"],
        body["description"],
        body["steps"],
        body["triggers"],
        body["metadata"],
    )
    state.deployed.workflows[workflow.id] = workflow
    state.created("workflow")
    return workflow.to_json(state.style)


async def get_workflow(call: Call) -> Any:
    return _workflow(call).to_json(call.state.style)


async def update_workflow(call: Call) -> Any:
    workflow = _workflow(call)
    for name in _UPDATABLE:
        if call.body[name] is not None:
            setattr(workflow, name, call.body[name])
    workflow.updated_at = utcnow()
    return workflow.to_json(call.state.style)


async def delete_workflow(call: Call) -> Any:
    del call.state.deployed.workflows[_workflow(call).id]


async def trigger_workflow(call: Call) -> Any:
    state = call.state
    workflow = _workflow(call)
    run = WorkflowRun(new_id("run"), workflow.id, call.body["inputs"])
    state.deployed.workflow_runs[run.id] = run
    state.created("workflow_run")
    return run.to_json(state.style)


async def list_workflow_runs(call: Call) -> Any:
    state = call.state
    workflow = _workflow(call)
    runs = state.deployed.workflow_runs.values()
    return [run.to_json(state.style) for run in runs if run.workflow_id == workflow.id]
