"""Serving: the event loop, the embedded emulator, signals, and the heap after start-up."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Literal

from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import ConfigError, HostPort, parse_host_port
from gateway.server.gateway import Gateway

log = logging.getLogger("gateway.cli")


def run_loop(main: Coroutine[Any, Any, None], choice: str) -> None:
    """Run ``main`` on uvloop when installed (``auto``) or asked for, else on asyncio.

    The loop is made here, before any gRPC object exists, as grpc.aio requires.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "GATEWAY_EVENT_LOOP=uvloop, but uvloop is not installed"
                ) from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


@contextlib.asynccontextmanager
async def upstream_for(config: GatewayConfig) -> AsyncIterator[str]:
    """The configured upstream URL, or an embedded emulator started for the duration."""
    if config.upstream_url is not None:
        yield config.upstream_url
        return
    from gateway.emulator import EmulatorConfig, running_emulator

    # Paced so that a person watching sees runs stream and executions advance.
    paced = EmulatorConfig(
        open_mode=True,
        stream_delay_seconds=0.03,
        step_delay_seconds=0.4,
        dialect=config.emulator_dialect,
    )
    async with running_emulator(paced, "127.0.0.1", 0) as emulator:
        yield emulator.url


async def serve(config: GatewayConfig) -> None:
    async with upstream_for(config) as upstream_url:
        gateway = Gateway(config, upstream_url)
        await gateway.start()
        settle_heap()
        if config.embedded_emulator:
            _print_banner(config.listen, gateway.port, upstream_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
            log.info("signal received: draining for up to %.1fs", config.shutdown_grace)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await gateway.stop()


def settle_heap() -> None:
    """Take what start-up built out of the garbage collector's reach.

    Descriptors, routes, codecs and modules live as long as the process; left in the
    collector's generations, every full collection walks them all, a pause that lands on
    whichever calls are in flight. After one collection, ``gc.freeze`` moves them to a
    permanent generation, so later collections look only at what calls allocate.
    """
    gc.collect()
    gc.freeze()


def _print_banner(listen: HostPort, port: int, upstream_url: str) -> None:
    target = f"{listen.host}:{port}"
    print(
        f"""
gagiteck-gateway is serving gRPC on {target}
  upstream: the embedded Gagiteck emulator at {upstream_url} (open mode, in memory)
  set GATEWAY_UPSTREAM_URL to front a real API instead.

Try it:
  grpcurl -plaintext {target} list
  grpcurl -plaintext -d '{{"agent": {{"name": "Helper", "system_prompt": "You are terse."}}}}' \\
      {target} gagiteck.v1.AgentService/CreateAgent
  gagiteck-gateway demo --target {target}

Ctrl-C drains in-flight calls and stops.
""",
        flush=True,
    )


async def run_emulator(
    listen: str,
    open_mode: bool,
    api_keys: tuple[str, ...],
    dialect: Literal["reference", "deployed"],
) -> None:
    from gateway.emulator import EmulatorConfig, serve_forever

    try:
        address = parse_host_port(listen)
    except ValueError as exc:
        raise ConfigError(f"--listen={listen!r}: {exc}") from exc
    config = EmulatorConfig(open_mode=open_mode, api_keys=api_keys, dialect=dialect)
    await serve_forever(config, address.host, address.port)
