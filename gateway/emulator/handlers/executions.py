"""ExecutionService: list (with a status filter), get, cancel, logs."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..context import principal_of, state_of
from ..errors import conflict
from ..executions import finish
from ..jsonio import json_response, list_query, list_response
from ..resources import Execution
from ..validation import Field, literal

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
STATUS_FILTER = (Field("status", literal(*STATUSES, kind="enum")),)
CANCEL_WAIT_SECONDS = 2.0


def _execution(request: web.Request) -> Execution:
    state = state_of(request)
    account_id = principal_of(request).account_id
    return state.store.executions.get(account_id, request.match_info["execution_id"])


async def list_executions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request, STATUS_FILTER)
    executions = state.executions_of(principal_of(request).account_id)
    status = query.get("status")
    if status is not None:
        executions = [execution for execution in executions if execution.status == status]
    return list_response(executions, query, state.render)


async def get_execution(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(_execution(request)))


async def cancel_execution(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    execution = _execution(request)
    if execution.finished:
        raise conflict(f"Execution {execution.id} is already {execution.status}")
    finish(state, execution, "cancelled")
    for active in state.active_runs.values():
        if active.execution_id == execution.id:
            active.cancelled.set()
    task = state.execution_tasks.get(execution.id)
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_SECONDS)
    return json_response(state.render(execution))


async def execution_logs(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    execution = _execution(request)
    query = list_query(request)
    return list_response(execution.logs, query, state.render)
