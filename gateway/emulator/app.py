"""`create_app`: the aiohttp application, its route table, middlewares and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from .config import EmulatorConfig
from .context import ROUTES_KEY, STATE_KEY, Route
from .deployed.routes import ROUTES as DEPLOYED_ROUTES
from .middleware import MIDDLEWARES, standard_headers
from .routes import ROUTES
from .state import EmulatorState

OUTBOUND_CONNECTIONS = 32


def _check_routes(routes: tuple[Route, ...]) -> dict[tuple[str, str], Route]:
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        if (route.method, route.path) in table:
            raise ValueError(f"duplicate route {route.label}")
        table[(route.method, route.path)] = route
    return table


async def _outbound_session(app: web.Application) -> AsyncIterator[None]:
    """One client session for webhooks and webhook steps, owned by the app's lifespan."""
    state = app[STATE_KEY]
    connector = aiohttp.TCPConnector(limit=OUTBOUND_CONNECTIONS)
    state.session = aiohttp.ClientSession(connector=connector)
    try:
        yield
    finally:
        await state.stop_work()
        await state.session.close()
        state.session = None


async def _on_shutdown(app: web.Application) -> None:
    """Ask open streams to end so that the server can stop promptly."""
    app[STATE_KEY].closing.set()


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """The emulator as an aiohttp application (not yet started)."""
    config = config or EmulatorConfig()
    routes = DEPLOYED_ROUTES if config.dialect == "deployed" else ROUTES
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=config.max_body_bytes)
    app[STATE_KEY] = EmulatorState(config)
    app[ROUTES_KEY] = _check_routes(routes)
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app.on_response_prepare.append(standard_headers)
    app.on_shutdown.append(_on_shutdown)
    app.cleanup_ctx.append(_outbound_session)
    return app


def state_of_app(app: web.Application) -> EmulatorState:
    return app[STATE_KEY]
