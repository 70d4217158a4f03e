"""Search across an account's agents, workflows and (when asked) executions.

The query matches case-insensitively as a substring; where it matches sets
the score: the whole name 1.0, the start of the name 0.9, inside the name
0.8, the description 0.6, the system prompt 0.4 (an execution: its id or
its resource's name 0.7, its status 0.5). An empty query matches everything
at 0.1. Results are sorted by score, then newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .resources import Agent, Execution, Workflow
from .store import Store

TYPES = ("agent", "workflow", "execution")
DEFAULT_TYPES = ("agent", "workflow")
EMPTY_QUERY_SCORE = 0.1


@dataclass(frozen=True)
class Hit:
    type: str
    id: str
    name: str
    description: str | None
    status: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "score": self.score,
        }


def _text_score(query: str, name: str, description: str | None, prompt: str = "") -> float:
    if not query:
        return EMPTY_QUERY_SCORE
    lowered = name.lower()
    if lowered == query:
        return 1.0
    if lowered.startswith(query):
        return 0.9
    if query in lowered:
        return 0.8
    if description and query in description.lower():
        return 0.6
    if prompt and query in prompt.lower():
        return 0.4
    return 0.0


def _agent_hit(agent: Agent, query: str) -> Hit:
    score = _text_score(query, agent.name, None, agent.system_prompt)
    return Hit("agent", agent.id, agent.name, agent.system_prompt or None, agent.status, score)


def _workflow_hit(workflow: Workflow, query: str) -> Hit:
    score = _text_score(query, workflow.name, workflow.description)
    return Hit("workflow", workflow.id, workflow.name, workflow.description, workflow.status, score)


def _resource_name(store: Store, execution: Execution) -> str:
    resource = store.agents.rows.get(execution.resource_id) or store.workflows.rows.get(
        execution.resource_id
    )
    return resource.name if resource is not None else execution.resource_id


def _execution_hit(store: Store, execution: Execution, query: str) -> Hit:
    name = _resource_name(store, execution)
    score = EMPTY_QUERY_SCORE if not query else 0.0
    if query and (query in execution.id.lower() or query in name.lower()):
        score = 0.7
    elif query and query == execution.status:
        score = 0.5
    description = f"{execution.type} execution of {execution.resource_id}"
    return Hit("execution", execution.id, name, description, execution.status, score)


def search(
    store: Store, account_id: str, query: str, types: tuple[str, ...], status: str | None
) -> list[Hit]:
    needle = query.strip().lower()
    hits: list[Hit] = []
    if "agent" in types:
        hits.extend(_agent_hit(agent, needle) for agent in store.agents.of(account_id))
    if "workflow" in types:
        hits.extend(_workflow_hit(flow, needle) for flow in store.workflows.of(account_id))
    if "execution" in types:
        hits.extend(_execution_hit(store, run, needle) for run in store.executions.of(account_id))
    kept = [hit for hit in hits if hit.score > 0 and (status is None or hit.status == status)]
    return sorted(kept, key=lambda hit: -hit.score)
