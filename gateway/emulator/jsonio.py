"""Answer helpers: JSON bodies through orjson, 204s without a body, list queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from .store import paginate
from .validation import PAGE, Field, validate_query


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def list_query(request: web.Request, extra: tuple[Field, ...] = ()) -> dict[str, Any]:
    """`limit` (1-100, default 20), `offset` (>= 0) and any extra parameters, or a 422."""
    return validate_query(request.query, PAGE + extra)


def list_response(
    items: Iterable[Any], query: dict[str, Any], render: Callable[[Any], Any]
) -> web.Response:
    """`{data, total, limit, offset}` for the requested page."""
    page = paginate(items, query["limit"], query["offset"])
    return json_response(page.to_json(render))
