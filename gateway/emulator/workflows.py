"""Workflow executions: the steps run in order, `step_delay_seconds` apart, in the background.

Step types and their `config` (placeholders already resolved, see templates.py):

- `agent`     {agent_id, message, context?}  output: the agent's reply
- `transform` {template}                      output: the resolved template
- `delay`     {seconds}                       output: {"delayed_seconds": seconds}
- `webhook`   {url, method?, body?, headers?} output: {"status_code", "body"}; only
              loopback hosts are called, others are a simulated success

A step that fails fails the execution; cancelling stops it before the next step.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from .clock import utcnow
from .engine import plan_run
from .executions import finish
from .outbound import is_loopback, send
from .resources import Execution, StepResult
from .state import EmulatorState
from .templates import resolve

log = logging.getLogger("gateway.emulator")


class StepFailed(Exception):
    """A step could not do its work; the message becomes the step's error."""


async def _agent_step(state: EmulatorState, execution: Execution, config: dict[str, Any]) -> Any:
    agent_id = config.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise StepFailed("agent step requires config.agent_id")
    agent = state.store.agents.rows.get(agent_id)
    if agent is None or agent.account_id != execution.account_id:
        raise StepFailed(f"Agent {agent_id} not found")
    message = config.get("message")
    if message is None:
        message = execution.input
    text = message if isinstance(message, str) else orjson.dumps(message).decode()
    context = config.get("context")
    return plan_run(agent, text, context if isinstance(context, dict) else {}).content


async def _transform_step(
    state: EmulatorState, execution: Execution, config: dict[str, Any]
) -> Any:
    if "template" not in config:
        raise StepFailed("transform step requires config.template")
    return config["template"]


async def _delay_step(state: EmulatorState, execution: Execution, config: dict[str, Any]) -> Any:
    seconds = config.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise StepFailed("delay step requires config.seconds >= 0")
    await asyncio.sleep(seconds)
    return {"delayed_seconds": seconds}


def _decode(payload: bytes) -> Any:
    try:
        return orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return payload.decode(errors="replace")


async def _webhook_step(state: EmulatorState, execution: Execution, config: dict[str, Any]) -> Any:
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise StepFailed("webhook step requires config.url")
    method = str(config.get("method") or "POST").upper()
    if not is_loopback(url) or state.session is None:
        return {"status_code": 200, "simulated": True, "url": url, "method": method}
    extra = config.get("headers")
    headers = {"Content-Type": "application/json"}
    if isinstance(extra, dict):
        headers.update({str(k): str(v) for k, v in extra.items()})
    body = orjson.dumps(config.get("body"))
    seconds = state.config.outbound_timeout_seconds
    result = await send(state.session, method, url, body, headers, seconds)
    if result.error is not None:
        raise StepFailed(f"request to {url} failed: {result.error}")
    if not result.ok:
        raise StepFailed(f"{url} answered {result.status}")
    return {"status_code": result.status, "body": _decode(result.body)}


STEP_TYPES = {
    "agent": _agent_step,
    "transform": _transform_step,
    "delay": _delay_step,
    "webhook": _webhook_step,
}


def _resolved_config(execution: Execution, step: dict[str, Any], scope: dict[str, Any]) -> Any:
    def missing(path: str) -> None:
        execution.log("warning", f"Unresolved placeholder {{{{{path}}}}}", step["id"])

    return resolve(step.get("config") or {}, scope, missing)


async def _run_step(
    state: EmulatorState, execution: Execution, step: dict[str, Any], scope: dict[str, Any]
) -> StepResult:
    result = StepResult(step["id"], step.get("name") or step["id"], "running")
    execution.log("info", f"Step {step['id']} ({step['type']}) started", step["id"])
    try:
        config = _resolved_config(execution, step, scope)
        result.output = await STEP_TYPES[step["type"]](state, execution, config)
        result.status = "completed"
    except asyncio.CancelledError:
        result.status = "cancelled"
        raise
    except StepFailed as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:
        log.exception("step %s of %s crashed", step["id"], execution.id)
        result.status, result.error = "failed", f"internal error: {exc}"
    finally:
        result.completed_at = utcnow()
        execution.step_results.append(result)
    level = "info" if result.status == "completed" else "error"
    suffix = f": {result.error}" if result.error else ""
    execution.log(level, f"Step {step['id']} {result.status}{suffix}", step["id"])
    return result


async def run_workflow(
    state: EmulatorState, execution: Execution, steps: list[dict[str, Any]]
) -> None:
    """Run the steps of an execution (a background task); the execution ends final."""
    scope: dict[str, Any] = {"input": execution.input}
    last: Any = None
    try:
        for step in steps:
            await asyncio.sleep(state.config.step_delay_seconds)
            outcome = await _run_step(state, execution, step, scope)
            if outcome.status == "failed":
                finish(
                    state, execution, "failed", error=f"Step {step['id']} failed: {outcome.error}"
                )
                return
            scope[step["id"]] = {"output": outcome.output, "status": outcome.status}
            last = outcome.output
        finish(state, execution, "completed", result=last)
    except asyncio.CancelledError:
        finish(state, execution, "cancelled")
        raise
