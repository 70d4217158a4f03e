"""Test controls under `/_emulator/` (no authentication, never faulted or rate limited).

GET  /_emulator/health     {"status": "ok"}
GET  /_emulator/faults     the current Faults as JSON
POST /_emulator/faults     replace them (omitted members take their defaults)
GET  /_emulator/stats      counters (requests per route, streams, creations, …)
GET  /_emulator/requests   the last N requests (?limit=N, default 50)
POST /_emulator/reset      forget all data and counters; faults back to the configured ones
"""

from __future__ import annotations

from aiohttp import web

from ..config import ConfigError, Faults
from ..context import json_body, state_of
from ..errors import RequestValidationError, issue
from ..jsonio import json_response, no_content
from ..validation import (
    Field,
    integer,
    list_of,
    literal,
    nullable,
    number,
    string,
    validate_body,
    validate_query,
)

FAULTS = (
    Field("latency_seconds", number(ge=0)),
    Field("jitter_seconds", number(ge=0)),
    Field("error_rate", number(ge=0, le=1)),
    Field("error_status", integer(ge=400, le=599)),
    Field("drop_rate", number(ge=0, le=1)),
    Field("drop_mode", literal("before", "after")),
    Field("malformed_rate", number(ge=0, le=1)),
    Field("malformed_mode", literal("html", "truncated")),
    Field("paths", nullable(string())),
    Field("methods", list_of(string(min_length=1))),
    Field("seed", nullable(integer())),
)
DEFAULT_REQUESTS = 50


async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def get_faults(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).faults.faults.to_json())


async def set_faults(request: web.Request) -> web.StreamResponse:
    body = validate_body(await json_body(request), FAULTS, optional=True)
    if "methods" in body:
        body["methods"] = tuple(body["methods"])
    try:
        faults = Faults(**body)
    except ConfigError as exc:
        raise RequestValidationError(
            [issue(("body",), "value_error", f"Value error, {exc}", body)]
        ) from exc
    state_of(request).set_faults(faults)
    return json_response(faults.to_json())


async def stats(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).stats_json())


async def recent_requests(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    size = state.config.request_log_size
    query = validate_query(
        request.query,
        (Field("limit", integer(ge=1, le=size), default=lambda: min(DEFAULT_REQUESTS, size)),),
    )
    return json_response({"data": state.requests.last(query["limit"])})


async def reset(request: web.Request) -> web.StreamResponse:
    await state_of(request).reset()
    return no_content()
