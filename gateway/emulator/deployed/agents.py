"""Agents in the deployed dialect.

As in the service: no owner, lists oldest first, `status` always `active`
(neither create nor update can change it), `config` always complete (its
defaults fill what is not sent, and an update replaces it whole), and `stream`
accepted but ignored (a run always answers JSON). The service answers a run
with a placeholder; the emulator answers its own deterministic run (engine.py)
and records it as an agent execution.
"""

from __future__ import annotations

from typing import Any

from ..clock import utcnow
from ..ids import new_id
from ..runs import run_once
from .data import DeployedAgent
from .models import AGENT_CONFIG
from .operations import Call, not_found, page


def _full_config(config: dict[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {prop.name: prop.default for prop in AGENT_CONFIG.props}
    return dict(config)


def _agent(call: Call) -> DeployedAgent:
    agent = call.state.deployed.agents.get(call.path["agent_id"])
    if agent is None:
        raise not_found("Agent")
    return agent


async def list_agents(call: Call) -> Any:
    state = call.state
    rendered = [agent.to_json(state.style) for agent in state.deployed.agents.values()]
    return page(rendered, call.query)


async def create_agent(call: Call) -> Any:
    state, body = call.state, call.body
    agent = DeployedAgent(
        new_id("agent"),
        body["name"],
        body["system_prompt"],
        _full_config(body["config"]),
        body["tools"],
        body["metadata"],
    )
    state.deployed.agents[agent.id] = agent
    state.created("agent")
    return agent.to_json(state.style)


async def get_agent(call: Call) -> Any:
    return _agent(call).to_json(call.state.style)


async def update_agent(call: Call) -> Any:
    agent, body = _agent(call), call.body
    for name in ("name", "system_prompt", "tools", "metadata"):
        if body[name] is not None:
            setattr(agent, name, body[name])
    if body["config"] is not None:
        agent.config = _full_config(body["config"])
    agent.updated_at = utcnow()
    return agent.to_json(call.state.style)


async def delete_agent(call: Call) -> Any:
    del call.state.deployed.agents[_agent(call).id]


async def run_agent(call: Call) -> Any:
    state, body = call.state, call.body
    agent = _agent(call)
    run = run_once(state, agent.engine_agent(), body["message"], body["context"] or {})
    return state.render(run)
