"""WorkflowService: CRUD, trigger, and the runs of a workflow."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..clock import utcnow
from ..context import json_body, principal_of, state_of
from ..errors import RequestValidationError, issue
from ..executions import mark_running, new_execution
from ..ids import new_id
from ..jsonio import json_response, list_query, list_response, no_content
from ..resources import Workflow
from ..validation import (
    Field,
    json_object,
    list_of,
    literal,
    nested,
    nullable,
    string,
    validate_body,
)
from ..workflows import STEP_TYPES, run_workflow

STATUSES = ("active", "inactive", "archived")
STEP = (
    Field("id", string(min_length=1)),
    Field("type", literal(*STEP_TYPES), required=True),
    Field("name", nullable(string())),
    Field("config", json_object(), default=dict),
)
WORKFLOW = (
    Field("name", string(min_length=1), required=True),
    Field("description", nullable(string()), default=lambda: None),
    Field("steps", list_of(nested(STEP)), default=list),
    Field("status", literal(*STATUSES), default=lambda: "active"),
    Field("metadata", json_object(), default=dict),
)
TRIGGER = (Field("input", nullable(json_object()), default=dict),)


def _normalise_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every step an id (`step_<n>`) and a name; ids must be unique."""
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        ident = step.get("id") or f"step_{index + 1}"
        if ident in seen:
            msg = f"Value error, duplicate step id '{ident}'"
            raise RequestValidationError(
                [issue(("body", "steps", index, "id"), "value_error", msg, ident)]
            )
        seen.add(ident)
        name = step.get("name") or ident
        result.append({"id": ident, "type": step["type"], "name": name, "config": step["config"]})
    return result


async def list_workflows(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request)
    return list_response(
        state.store.workflows.of(principal_of(request).account_id), query, state.render
    )


async def create_workflow(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), WORKFLOW)
    workflow = Workflow(
        new_id("wf"),
        principal_of(request).account_id,
        body["name"],
        body["description"],
        _normalise_steps(body["steps"]),
        body["metadata"],
        body["status"],
    )
    state.store.workflows.add(workflow)
    state.created("workflow")
    state.emit(workflow.account_id, "workflow.created", workflow)
    return json_response(state.render(workflow), 201)


def _workflow(request: web.Request) -> Workflow:
    state = state_of(request)
    return state.store.workflows.get(
        principal_of(request).account_id, request.match_info["workflow_id"]
    )


async def get_workflow(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(_workflow(request)))


async def update_workflow(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    changes = validate_body(await json_body(request), WORKFLOW, partial=True)
    workflow = _workflow(request)
    if "steps" in changes:
        changes["steps"] = _normalise_steps(changes["steps"])
    for name in ("name", "description", "steps", "status", "metadata"):
        if name in changes:
            setattr(workflow, name, changes[name])
    workflow.updated_at = utcnow()
    state.emit(workflow.account_id, "workflow.updated", workflow)
    return json_response(state.render(workflow))


async def delete_workflow(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    account_id = principal_of(request).account_id
    workflow = state.store.workflows.remove(account_id, request.match_info["workflow_id"])
    state.emit(account_id, "workflow.deleted", workflow)
    return no_content()


async def trigger_workflow(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), TRIGGER, optional=True)
    workflow = _workflow(request)
    execution = new_execution(
        state, workflow.account_id, "workflow", workflow.id, body["input"] or {}
    )
    mark_running(state, execution)
    steps = [dict(step) for step in workflow.steps]
    task = state.background.spawn(
        run_workflow(state, execution, steps), name=f"execution {execution.id}"
    )
    state.execution_tasks[execution.id] = task
    task.add_done_callback(lambda _task: state.execution_tasks.pop(execution.id, None))
    return json_response(state.render(execution))


async def list_workflow_runs(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    workflow = _workflow(request)
    query = list_query(request)
    runs = [
        execution
        for execution in state.executions_of(workflow.account_id)
        if execution.type == "workflow" and execution.resource_id == workflow.id
    ]
    return list_response(runs, query, state.render)
