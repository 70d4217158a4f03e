"""The life of an Execution: pending → running → completed | failed | cancelled.

Each transition is logged on the execution and announced to webhooks
(`execution.started`, `execution.completed`, …).
"""

from __future__ import annotations

from typing import Any

from .clock import utcnow
from .ids import new_id
from .resources import Execution
from .state import EmulatorState


def new_execution(
    state: EmulatorState, account_id: str, kind: str, resource_id: str, given: dict[str, Any]
) -> Execution:
    execution = Execution(new_id("exec"), account_id, kind, resource_id, given, started_at=None)
    execution.log("info", f"Execution of {kind} {resource_id} created")
    state.store.executions.add(execution)
    state.created("execution")
    return execution


def mark_running(state: EmulatorState, execution: Execution) -> None:
    execution.status = "running"
    execution.started_at = utcnow()
    execution.log("info", "Execution started")
    state.emit(execution.account_id, "execution.started", execution)


def finish(
    state: EmulatorState,
    execution: Execution,
    status: str,
    result: Any = None,
    error: str | None = None,
) -> None:
    """Move a running execution to a final status (once; later calls are ignored)."""
    if execution.finished:
        return
    execution.status = status
    execution.result = result
    execution.error = error
    execution.completed_at = utcnow()
    level = "error" if status == "failed" else "info"
    execution.log(level, f"Execution {status}" + (f": {error}" if error else ""))
    state.emit(execution.account_id, f"execution.{status}", execution)
