"""Deterministic agent runs: no model, the same input always gives the same run.

The reply quotes the message and names the persona found in the system
prompt ("You are a helpful research assistant" → "a helpful research
assistant"); a prompt saying `Reply with 'X'` makes the reply exactly X.
Tools of the agent are called when they apply to the message:

- `calculator`: the first arithmetic expression in the message, evaluated safely;
- `web_search`: when the message asks something or says search/latest/news/find,
  canned results derived from the query;
- any other tool: when the message names it, an echo of the message.

Content is produced as a list of chunks (one per word with its trailing
space) so that streamed and unary runs are the same text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .calculator import CalculatorError, evaluate, find_expression
from .config import DEFAULT_MODEL
from .resources import Agent

_PERSONA = re.compile(r"\byou are\s+((?:an?|the)\s+)?([^.,;:!?\n]+)", re.IGNORECASE)
_REPLY_WITH = re.compile(r"reply with\s+(['\"])(.+?)\1", re.IGNORECASE)
_SEARCHY = re.compile(
    r"\b(search|latest|news|find|look up|lookup|who|what|when|where|why|how)\b|\?",
    re.IGNORECASE,
)
_CHUNK = re.compile(r"\S+\s*")
_PERSONA_WORDS = 8
_SEARCH_RESULTS = 3


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    result: Any
    sentence: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
        }


@dataclass(frozen=True)
class RunPlan:
    """Everything a run produces, before it is paced out or stored."""

    model: str
    chunks: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    input_tokens: int

    @property
    def content(self) -> str:
        return "".join(self.chunks)

    @property
    def usage(self) -> dict[str, int]:
        output = len(self.chunks)
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output,
            "total_tokens": self.input_tokens + output,
        }


def persona(agent: Agent) -> str:
    """How the agent describes itself, from its system prompt or else its name."""
    match = _PERSONA.search(agent.system_prompt)
    if match is None:
        return agent.name or "an assistant"
    words = match.group(2).split()[:_PERSONA_WORDS]
    article = (match.group(1) or "").strip().lower()
    if article in ("", "a", "an"):
        article = "an" if words[0][0].lower() in "aeiou" else "a"
    return f"{article} {' '.join(words)}"


def _calculator(call_id: str, message: str) -> ToolCall | None:
    expression = find_expression(message)
    if expression is None:
        return None
    try:
        result: Any = evaluate(expression)
        sentence = f"The calculator gives {expression} = {result}."
    except CalculatorError as exc:
        result = {"error": str(exc)}
        sentence = f"The calculator could not evaluate {expression}: {exc}."
    return ToolCall(call_id, "calculator", {"expression": expression}, result, sentence)


def search_results(query: str) -> list[dict[str, str]]:
    """Canned, stable results for a query."""
    digest = hashlib.sha256(query.lower().encode()).hexdigest()
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "query"
    return [
        {
            "title": f"{query} - result {rank}",
            "url": f"https://search.example/{slug}/{digest[rank * 6 : rank * 6 + 8]}",
            "snippet": f"Result {rank} about {query} (ref {digest[: rank + 6]}).",
        }
        for rank in range(1, _SEARCH_RESULTS + 1)
    ]


def _web_search(call_id: str, message: str) -> ToolCall | None:
    if not _SEARCHY.search(message):
        return None
    query = " ".join(message.split()).strip(" ?!.") or message
    results = search_results(query)
    first = results[0]["title"]
    sentence = f'Searching the web for "{query}" found {len(results)} results, first "{first}".'
    return ToolCall(call_id, "web_search", {"query": query}, results, sentence)


def _echo(call_id: str, name: str, message: str) -> ToolCall | None:
    spoken = name.replace("_", " ").lower()
    lowered = message.lower()
    if name.lower() not in lowered and spoken not in lowered:
        return None
    return ToolCall(
        call_id, name, {"input": message}, {"echo": message}, f"The {name} tool echoed the request."
    )


def _tool_call(call_id: str, name: str, message: str) -> ToolCall | None:
    if name == "calculator":
        return _calculator(call_id, message)
    if name == "web_search":
        return _web_search(call_id, message)
    return _echo(call_id, name, message)


def _tool_calls(agent: Agent, message: str) -> tuple[ToolCall, ...]:
    limit = agent.config.get("max_iterations")
    calls: list[ToolCall] = []
    for name in agent.tools:
        if isinstance(limit, int) and len(calls) >= limit:
            break
        call = _tool_call(f"call_{len(calls) + 1}", name, message)
        if call is not None:
            calls.append(call)
    return tuple(calls)


def _compose(
    agent: Agent, message: str, context: dict[str, Any], calls: tuple[ToolCall, ...]
) -> str:
    directive = _REPLY_WITH.search(agent.system_prompt)
    if directive is not None:
        return directive.group(2)
    parts = [f'As {persona(agent)}, I received your message: "{message}".']
    parts.extend(call.sentence for call in calls)
    if context:
        parts.append(f"Context received: {', '.join(sorted(context))}.")
    return " ".join(parts)


def _chunks(content: str, max_tokens: Any) -> tuple[str, ...]:
    chunks = _CHUNK.findall(content)
    if isinstance(max_tokens, int) and max_tokens > 0:
        chunks = chunks[:max_tokens]
    return tuple(chunks)


def plan_run(agent: Agent, message: str, context: dict[str, Any] | None = None) -> RunPlan:
    """The run an agent produces for a message (and optional context)."""
    calls = _tool_calls(agent, message)
    content = _compose(agent, message, context or {}, calls)
    model = agent.config.get("model") or DEFAULT_MODEL
    input_tokens = len(message.split()) + len(agent.system_prompt.split())
    return RunPlan(
        str(model), _chunks(content, agent.config.get("max_tokens")), calls, input_tokens
    )
