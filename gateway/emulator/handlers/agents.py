"""AgentService: CRUD, runs (unary and streamed) and cancelling a streamed run."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..clock import utcnow
from ..context import json_body, principal_of, state_of
from ..errors import ApiError
from ..ids import new_id
from ..jsonio import json_response, list_query, list_response, no_content
from ..resources import Agent
from ..runs import run_once, run_streamed
from ..validation import (
    Field,
    boolean,
    integer,
    json_object,
    list_of,
    literal,
    nested,
    nullable,
    number,
    string,
    validate_body,
)

STATUSES = ("active", "inactive", "archived")
CONFIG = (
    Field("model", nullable(string(min_length=1))),
    Field("max_tokens", nullable(integer(ge=1))),
    Field("temperature", nullable(number(ge=0, le=2))),
    Field("max_iterations", nullable(integer(ge=1))),
    Field("timeout_ms", nullable(integer(ge=1))),
)
AGENT = (
    Field("name", string(min_length=1), required=True),
    Field("system_prompt", string(), default=lambda: ""),
    Field("config", nested(CONFIG), default=dict),
    Field("tools", list_of(string(min_length=1)), default=list),
    Field("metadata", json_object(), default=dict),
    Field("status", literal(*STATUSES), default=lambda: "active"),
)
RUN = (
    Field("message", string(), required=True),
    Field("context", nullable(json_object()), default=dict),
    Field("stream", boolean(), default=lambda: False),
)


def _present(members: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in members.items() if value is not None}


async def list_agents(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request)
    return list_response(
        state.store.agents.of(principal_of(request).account_id), query, state.render
    )


async def create_agent(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), AGENT)
    agent = Agent(
        new_id("agent"),
        principal_of(request).account_id,
        body["name"],
        body["system_prompt"],
        _present(body["config"]),
        body["tools"],
        body["metadata"],
        body["status"],
    )
    state.store.agents.add(agent)
    state.created("agent")
    state.emit(agent.account_id, "agent.created", agent)
    return json_response(state.render(agent), 201)


def _agent(request: web.Request) -> Agent:
    state = state_of(request)
    return state.store.agents.get(principal_of(request).account_id, request.match_info["agent_id"])


async def get_agent(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(_agent(request)))


def _apply(agent: Agent, changes: dict[str, Any]) -> None:
    for name in ("name", "system_prompt", "tools", "metadata", "status"):
        if name in changes:
            setattr(agent, name, changes[name])
    if "config" in changes:
        merged = {**agent.config, **changes["config"]}
        agent.config = _present(merged)
    agent.updated_at = utcnow()


async def update_agent(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    changes = validate_body(await json_body(request), AGENT, partial=True)
    agent = _agent(request)
    _apply(agent, changes)
    state.emit(agent.account_id, "agent.updated", agent)
    return json_response(state.render(agent))


async def delete_agent(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    agent = state.store.agents.remove(
        principal_of(request).account_id, request.match_info["agent_id"]
    )
    state.emit(agent.account_id, "agent.deleted", agent)
    return no_content()


async def run_agent(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), RUN)
    agent = _agent(request)
    context = body["context"] or {}
    if body["stream"]:
        return await run_streamed(request, state, agent, body["message"], context)
    return json_response(state.render(run_once(state, agent, body["message"], context)))


async def cancel_run(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    run_id = request.match_info["run_id"]
    active = state.active_runs.get(run_id)
    run = None if active is None else active.run
    if (
        active is None
        or run is None
        or run.account_id != principal_of(request).account_id
        or run.agent_id != request.match_info["agent_id"]
    ):
        raise ApiError(404, f"Run {run_id} not found or not in progress")
    active.cancelled.set()
    return json_response(state.render(run))
