"""Search and suggestions in the deployed dialect.

Scoring follows the service: against a text, the whole text (any case) 1.0,
a substring 0.8, otherwise the share of the query's words found among the
text's words times 0.6. An agent scores the better of its name and 0.7 x its
system prompt, a workflow of its name and 0.7 x its description, an execution
of its id and its resource id. `status` filters before scoring, unknown
`types` are ignored (an empty `types` means all). Results are sorted by score
(ties keep agents, workflows, executions, oldest first), cut to `limit`, and
`total` counts what is returned, not what matched. There is no `offset`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..clock import render_time
from ..config import TimestampStyle
from .data import execution_started
from .operations import Call

PROMPT_WEIGHT = 0.7
WORD_WEIGHT = 0.6
DESCRIPTION_CHARS = 100


def text_score(query: str, text: str) -> float:
    if not query or not text:
        return 0.0
    needle, haystack = query.lower(), text.lower()
    if needle == haystack:
        return 1.0
    if needle in haystack:
        return 0.8
    wanted = set(needle.split())
    common = wanted & set(haystack.split())
    if common:
        return len(common) / len(wanted) * WORD_WEIGHT
    return 0.0


def _result(
    ident: str,
    kind: str,
    name: str,
    description: str | None,
    status: str,
    created: str | None,
    score: float,
) -> dict[str, Any]:
    return {
        "id": ident,
        "type": kind,
        "name": name,
        "description": description,
        "status": status,
        "created_at": created,
        "score": score,
    }


def _results(
    call: Call, query: str, kinds: list[str] | None, status: str | None, style: TimestampStyle
) -> Iterator[dict[str, Any]]:
    data, store = call.state.deployed, call.state.store

    def wanted(kind: str, current: str) -> bool:
        return (not kinds or kind in kinds) and not (status and current != status)

    for agent in data.agents.values():
        if not wanted("agent", agent.status):
            continue
        prompt = agent.system_prompt or ""
        score = max(text_score(query, agent.name), text_score(query, prompt) * PROMPT_WEIGHT)
        if score > 0:
            description = prompt[:DESCRIPTION_CHARS] if prompt else None
            created = render_time(agent.created_at, style)
            yield _result(agent.id, "agent", agent.name, description, agent.status, created, score)
    for flow in data.workflows.values():
        if not wanted("workflow", flow.status):
            continue
        score = max(
            text_score(query, flow.name),
            text_score(query, flow.description or "") * PROMPT_WEIGHT,
        )
        if score > 0:
            created = render_time(flow.created_at, style)
            yield _result(
                flow.id, "workflow", flow.name, flow.description, flow.status, created, score
            )
    for execution in store.executions.rows.values():
        if not wanted("execution", execution.status):
            continue
        score = max(text_score(query, execution.id), text_score(query, execution.resource_id))
        if score > 0:
            yield _result(
                execution.id,
                "execution",
                f"{execution.type} execution",
                f"Resource: {execution.resource_id}",
                execution.status,
                render_time(execution_started(execution), style),
                score,
            )


async def search(call: Call) -> Any:
    started = time.perf_counter()
    query = call.query
    types = query["types"]
    kinds = [part.strip() for part in types.split(",")] if types else None
    results = list(_results(call, query["q"], kinds, query["status"], call.state.style))
    results.sort(key=lambda result: result["score"], reverse=True)
    results = results[: query["limit"]]
    took_ms = (time.perf_counter() - started) * 1000
    return {"query": query["q"], "results": results, "total": len(results), "took_ms": took_ms}


async def search_suggestions(call: Call) -> Any:
    data = call.state.deployed
    needle = call.query["q"].lower()
    names = [(agent.name, "agent") for agent in data.agents.values()]
    names += [(flow.name, "workflow") for flow in data.workflows.values()]
    suggestions: list[dict[str, str]] = []
    seen: set[str] = set()
    for text, kind in names:
        if needle in text.lower() and text not in seen:
            seen.add(text)
            suggestions.append({"text": text, "type": kind})
            if len(suggestions) >= call.query["limit"]:
                break
    return {"suggestions": suggestions}
