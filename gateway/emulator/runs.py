"""Agent runs, unary and streamed, each recorded as an Execution of type `agent`."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiohttp import web

from .engine import RunPlan, plan_run
from .executions import finish, mark_running, new_execution
from .ids import new_id
from .resources import Agent, AgentRun, Execution
from .sse import EventStream, stream_response
from .state import ActiveRun, EmulatorState

log = logging.getLogger("gateway.emulator")

CANCELLED = {"detail": "The run was cancelled", "code": "CANCELLED", "status": 499}
SHUTTING_DOWN = {
    "detail": "The server is shutting down",
    "code": "SERVICE_UNAVAILABLE",
    "status": 503,
}


def _start(
    state: EmulatorState, agent: Agent, plan: RunPlan, given: dict[str, Any]
) -> tuple[AgentRun, Execution]:
    run = AgentRun(new_id("run"), agent.account_id, agent.id, plan.model)
    execution = new_execution(state, agent.account_id, "agent", agent.id, given)
    mark_running(state, execution)
    return run, execution


def _complete(state: EmulatorState, run: AgentRun, plan: RunPlan, execution: Execution) -> None:
    run.content = plan.content
    run.tool_calls = [call.to_json() for call in plan.tool_calls]
    run.usage = plan.usage
    state.store.runs.add(run)
    state.created("run")
    finish(state, execution, "completed", result=state.render(run))


def run_once(state: EmulatorState, agent: Agent, message: str, context: dict[str, Any]) -> AgentRun:
    """A unary run: planned, stored and its execution completed at once."""
    plan = plan_run(agent, message, context)
    run, execution = _start(state, agent, plan, {"message": message, "context": context})
    _complete(state, run, plan, execution)
    return run


class _Player:
    """Plays one planned run out as events, paced by `stream_delay_seconds`."""

    def __init__(
        self, state: EmulatorState, plan: RunPlan, active: ActiveRun, stream: EventStream
    ) -> None:
        self.state = state
        self.plan = plan
        self.active = active
        self.stream = stream

    def _stop(self) -> bool:
        return self.active.cancelled.is_set() or self.state.closing.is_set()

    async def _paced(self) -> bool:
        return await self.stream.pause(self.state.config.stream_delay_seconds, self._stop)

    async def play(self) -> str:
        run = self.active.run
        await self.stream.send(
            "run.started", {"run_id": run.id, "agent_id": run.agent_id, "model": run.model}
        )
        for call in self.plan.tool_calls:
            if not await self._paced():
                return await self._interrupted()
            run.tool_calls.append(call.to_json())
            await self.stream.send("tool.call", call.to_json())
        for chunk in self.plan.chunks:
            if not await self._paced():
                return await self._interrupted()
            run.content += chunk
            await self.stream.send("content.delta", {"delta": chunk})
        await self.stream.send("usage", self.plan.usage)
        return "completed"

    async def _interrupted(self) -> str:
        if self.active.cancelled.is_set():
            await self.stream.send("error", CANCELLED)
            return "cancelled"
        await self.stream.send("error", SHUTTING_DOWN)
        return "failed"


async def run_streamed(
    request: web.Request, state: EmulatorState, agent: Agent, message: str, context: dict[str, Any]
) -> web.StreamResponse:
    """A streamed run: `text/event-stream` until completed, cancelled or disconnected."""
    plan = plan_run(agent, message, context)
    run, execution = _start(
        state, agent, plan, {"message": message, "context": context, "stream": True}
    )
    active = ActiveRun(run, execution.id)
    state.active_runs[run.id] = active
    state.open_streams += 1
    response = stream_response()
    outcome = "disconnected"
    try:
        await response.prepare(request)
        stream = EventStream(request, response, state.config.heartbeat_seconds)
        outcome = await _Player(state, plan, active, stream).play()
        if outcome == "completed":
            _complete(state, run, plan, execution)
            await stream.send("run.completed", state.render(run))
    except ConnectionError:
        outcome = "disconnected"
    except Exception:
        log.exception("streamed run %s failed", run.id)
        outcome = "failed"
    finally:
        state.open_streams -= 1
        state.active_runs.pop(run.id, None)
        _settle(state, execution, outcome)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


def _settle(state: EmulatorState, execution: Execution, outcome: str) -> None:
    if outcome == "cancelled":
        finish(state, execution, "cancelled")
    elif outcome == "disconnected":
        finish(state, execution, "cancelled", error="The client disconnected")
    elif outcome == "failed":
        finish(state, execution, "failed", error="The stream ended before the run completed")
