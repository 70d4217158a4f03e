"""Typed access to what a request carries through the middlewares and handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .auth import Principal
from .limits import Quota
from .state import EmulatorState
from .validation import MISSING, parse_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One endpoint: verb, path template, handler, and who may call it."""

    method: str
    path: str
    handler: Handler
    public: bool = False
    control: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


STATE_KEY = web.AppKey("gagiteck_emulator_state", EmulatorState)
ROUTES_KEY = web.AppKey("gagiteck_emulator_routes", dict[tuple[str, str], Route])
# aiohttp >= 3.13 wants typed request keys; older releases only have strings.
_CONTEXT: Any = (
    web.RequestKey("gagiteck_emulator_context", object)
    if hasattr(web, "RequestKey")
    else "gagiteck_emulator_context"
)


@dataclass
class RequestContext:
    request_id: str
    route: Route | None
    label: str
    principal: Principal | None = None
    quota: Quota | None = None
    bucket: str | None = None
    body: Any = MISSING
    dropped: bool = False

    @property
    def control(self) -> bool:
        return self.route is not None and self.route.control


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def attach(request: web.Request, context: RequestContext) -> None:
    request[_CONTEXT] = context


def context_of(request: web.Request) -> RequestContext:
    context = request.get(_CONTEXT)
    assert isinstance(context, RequestContext), "request went around the context middleware"
    return context


def maybe_context(request: web.BaseRequest) -> RequestContext | None:
    context = request.get(_CONTEXT)
    return context if isinstance(context, RequestContext) else None


def principal_of(request: web.Request) -> Principal:
    principal = context_of(request).principal
    assert principal is not None, "route needs authentication"
    return principal


def route_of(request: web.Request) -> Route | None:
    """The endpoint a request matched, if any (HEAD is served by the GET route)."""
    info = request.match_info
    resource = info.route.resource
    if resource is None:
        return None
    routes = request.app[ROUTES_KEY]
    method = "GET" if info.route.method == "HEAD" else info.route.method
    return routes.get((method, resource.canonical))


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body (`MISSING` when empty); malformed JSON is a 422."""
    context = context_of(request)
    if context.body is MISSING:
        context.body = parse_json(await request.read())
    return context.body
