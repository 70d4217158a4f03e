"""Operations of the deployed dialect: a declaration per endpoint, and its aiohttp handler.

An `Operation` names its verb and path, its query parameters, its body model,
its success status and the type of its answer. `Operation.route` wraps the
operation's function so that, as in FastAPI, query parameters and the body are
validated together (every problem in one 422) before the function runs, and
the function's return value is answered with the declared status (204: no
body). The same declarations produce /openapi.json (openapi.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..auth import Principal
from ..context import Route, context_of, principal_of, state_of
from ..errors import ApiError, Issue, RequestValidationError, issue
from ..jsonio import json_response
from ..state import EmulatorState
from ..validation import INVALID, MISSING, validate_object
from .schema import NO_DEFAULT, Model, Schema, Type

_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Param:
    """A query parameter; required when it has no default and is not nullable."""

    name: str
    type: Type
    required: bool = False
    default: Any = NO_DEFAULT

    def schema(self) -> Schema:
        schema = {**self.type.schema(), "title": self.name.replace("_", " ").title()}
        if self.default is not NO_DEFAULT and self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Call:
    """What an operation's function receives: the request, validated."""

    request: web.Request
    query: dict[str, Any]
    body: dict[str, Any]

    @property
    def state(self) -> EmulatorState:
        return state_of(self.request)

    @property
    def principal(self) -> Principal:
        return principal_of(self.request)

    @property
    def path(self) -> Mapping[str, str]:
        return self.request.match_info


Function = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One endpoint of the deployed service.

    `answer` is the type of a successful answer; None means no body (204).
    `secured` operations need a bearer credential. `described` lists extra
    statuses the service documents without a body (e.g. 404).
    """

    method: str
    path: str
    name: str
    tag: str
    function: Function
    answer: Type | None
    status: int = 200
    query: tuple[Param, ...] = ()
    body: Model | None = None
    secured: bool = False
    described: tuple[tuple[int, str], ...] = ()

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    @property
    def validates(self) -> bool:
        """Whether the operation can answer 422 (it takes parameters or a body)."""
        return bool(self.path_params or self.query or self.body)

    @property
    def route(self) -> Route:
        return Route(self.method, self.path, self._handle, public=not self.secured)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        issues: list[Issue] = []
        query = self._query(request, issues)
        body: dict[str, Any] = {}
        if self.body is not None:
            body = await self._body(request, issues)
        if issues:
            raise RequestValidationError(issues)
        answer = await self.function(Call(request, query, body))
        if self.answer is None:
            # FastAPI labels its empty 204 answers as JSON.
            return web.Response(status=204, headers={"Content-Type": "application/json"})
        return json_response(answer, self.status)

    def _query(self, request: web.Request, issues: list[Issue]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for param in self.query:
            if param.name in request.query:
                sent = request.query.getall(param.name)[-1]  # Starlette keeps the last one
                result[param.name] = param.type.check()(sent, ("query", param.name), issues)
            elif param.required:
                issues.append(issue(("query", param.name), "missing", "Field required", None))
            else:
                result[param.name] = None if param.default is NO_DEFAULT else param.default
        return result

    async def _body(self, request: web.Request, issues: list[Issue]) -> dict[str, Any]:
        assert self.body is not None
        raw = await read_body(request)
        if raw is MISSING:
            issues.append(issue(("body",), "missing", "Field required", None))
            return {}
        result = validate_object(raw, self.body.fields, ("body",), issues)
        return {} if result is INVALID else dict(result)


def _is_json(content_type: str | None) -> bool:
    """FastAPI reads a body as JSON only under application/json or application/*+json."""
    if not content_type:
        return False
    main, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def read_body(request: web.Request) -> Any:
    """The body as FastAPI sees it: decoded JSON, the raw text otherwise, `MISSING` if empty.

    Malformed JSON is a 422 `json_invalid` at `["body", <offset>]`, with the
    standard library's decoder message (FastAPI uses that decoder).
    """
    context = context_of(request)
    if context.body is MISSING:
        raw = await request.read()
        if not raw:
            return MISSING
        if not _is_json(request.headers.get("Content-Type")):
            context.body = raw.decode("utf-8", "replace")
            return context.body
        try:
            context.body = json.loads(raw)
        except UnicodeDecodeError as exc:
            entry = issue(
                ("body", exc.start), "json_invalid", "JSON decode error", {}, error=str(exc)
            )
            raise RequestValidationError([entry]) from exc
        except json.JSONDecodeError as exc:
            entry = issue(("body", exc.pos), "json_invalid", "JSON decode error", {}, error=exc.msg)
            raise RequestValidationError([entry]) from exc
    return context.body


def not_found(what: str) -> ApiError:
    """FastAPI's HTTPException answer: `{"detail": "<What> not found"}`."""
    return ApiError(404, f"{what} not found")


def bad_request(detail: str) -> ApiError:
    return ApiError(400, detail)


def page(items: list[Any], query: dict[str, Any]) -> dict[str, Any]:
    """`{data, total, limit, offset}` over already rendered items."""
    limit, offset = query["limit"], query["offset"]
    return {
        "data": items[offset : offset + limit],
        "total": len(items),
        "limit": limit,
        "offset": offset,
    }
