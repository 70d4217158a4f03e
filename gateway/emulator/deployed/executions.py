"""Executions in the deployed dialect.

The service lists, reads and cancels executions but never records one; the
emulator records its agent runs (see agents.py), shown in the service's shape.
Cancelling a finished execution is 400. The logs answer is
`{"execution_id", "logs": [{"timestamp", "level", "message"}]}`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..clock import render_time
from ..executions import finish
from ..resources import Execution
from .data import execution_json
from .operations import Call, bad_request, not_found, page

CANCEL_WAIT_SECONDS = 2.0
CANCELLABLE = ("pending", "running")


def _execution(call: Call) -> Execution:
    execution = call.state.store.executions.rows.get(call.path["execution_id"])
    if execution is None:
        raise not_found("Execution")
    return execution


async def list_executions(call: Call) -> Any:
    state = call.state
    status = call.query["status"]
    executions = [
        execution
        for execution in state.store.executions.rows.values()
        if not status or execution.status == status
    ]
    return page([execution_json(item, state.style) for item in executions], call.query)


async def get_execution(call: Call) -> Any:
    return execution_json(_execution(call), call.state.style)


async def cancel_execution(call: Call) -> Any:
    state = call.state
    execution = _execution(call)
    if execution.status not in CANCELLABLE:
        raise bad_request(f"Cannot cancel execution with status: {execution.status}")
    finish(state, execution, "cancelled")
    for active in state.active_runs.values():
        if active.execution_id == execution.id:
            active.cancelled.set()
    task = state.execution_tasks.get(execution.id)
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_SECONDS)
    return execution_json(execution, state.style)


async def get_execution_logs(call: Call) -> Any:
    state = call.state
    execution = _execution(call)
    entries = [
        {
            "timestamp": render_time(entry.timestamp, state.style),
            "level": entry.level,
            "message": entry.message,
        }
        for entry in execution.logs
    ]
    return {"execution_id": execution.id, "logs": entries}
