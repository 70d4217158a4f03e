"""Running the emulator: in-process for tests (`running_emulator`) or as a service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from .app import create_app, state_of_app
from .config import EmulatorConfig
from .state import EmulatorState

log = logging.getLogger("gateway.emulator")

SHUTDOWN_SECONDS = 2.0


@dataclass(frozen=True)
class RunningEmulator:
    """A started emulator: where it listens and what tests may inspect."""

    url: str
    app: web.Application
    state: EmulatorState
    host: str
    port: int


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the emulator is not listening on a TCP port")


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on `host:port` (0: any free port) for the duration of the block."""
    app = create_app(config or EmulatorConfig())
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = _bound_port(runner)
        yield RunningEmulator(_base_url(host, bound), app, state_of_app(app), host, bound)
    finally:
        await runner.cleanup()


async def serve_forever(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Serve until cancelled (the `gagiteck-gateway emulator` command)."""
    async with running_emulator(config, host, port) as emulator:
        shown = " (deployed dialect)" if emulator.state.dialect == "deployed" else ""
        log.info("Gagiteck REST emulator listening on %s%s", emulator.url, shown)
        await asyncio.Event().wait()
