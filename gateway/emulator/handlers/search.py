"""SearchService: `GET /v1/search?q&types&status&limit&offset`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..context import principal_of, state_of
from ..errors import Issue, issue
from ..jsonio import list_query, list_response
from ..search import DEFAULT_TYPES, TYPES, Hit, search
from ..validation import INVALID, Field, Loc, string


def _types(value: Any, loc: Loc, issues: list[Issue]) -> Any:
    if not isinstance(value, str):
        return INVALID
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in TYPES]
    if unknown:
        msg = f"Value error, unknown type '{unknown[0]}'; expected one of {', '.join(TYPES)}"
        issues.append(issue(loc, "value_error", msg, value))
        return INVALID
    return names or DEFAULT_TYPES


QUERY = (
    Field("q", string(), default=lambda: ""),
    Field("types", _types, default=lambda: DEFAULT_TYPES),
    Field("status", string()),
)


async def search_resources(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request, QUERY)
    hits = search(
        state.store,
        principal_of(request).account_id,
        query["q"],
        query["types"],
        query.get("status"),
    )

    def render(hit: Hit) -> Any:
        return hit.to_json()

    return list_response(hits, query, render)
