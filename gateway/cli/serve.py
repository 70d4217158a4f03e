"""Serving: the event loop, the embedded emulator, signals, and the heap after start-up."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import ConfigError, parse_host_port
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
        max_body_bytes=config.max_body_bytes,  # whatever the gateway sends, it accepts
    )
    async with running_emulator(paced, "127.0.0.1", 0) as emulator:
        yield emulator.url


async def serve(config: GatewayConfig) -> None:
    async with upstream_for(config) as upstream_url:
        gateway = Gateway(config, upstream_url)
        await gateway.start()
        settle_heap()
        if config.embedded_emulator:
            _print_banner(config, gateway.port, upstream_url)
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


def grpcurl_flags(config: GatewayConfig) -> str:
    """grpcurl's flags for the listener: ``-plaintext``, or TLS with the CA that signed its
    certificate and, with mTLS, a client certificate (names that :func:`_tls_hint` explains)."""
    if config.tls_cert is None:
        return "-plaintext"
    if config.tls_client_ca is None:
        return "-cacert CA.crt"
    return "-cacert CA.crt -cert CLIENT.crt -key CLIENT.key"


def health_probe_flags(config: GatewayConfig) -> str:
    """grpc-health-probe's flags for the listener, with the file names of :func:`grpcurl_flags`."""
    if config.tls_cert is None:
        return ""
    if config.tls_client_ca is None:
        return " -tls -tls-ca-cert CA.crt"
    return " -tls -tls-ca-cert CA.crt -tls-client-cert CLIENT.crt -tls-client-key CLIENT.key"


# The checkout the gateway runs from, when it does (an editable install, as `make run` has):
# its `make tools` puts grpcurl, ghz and grpc-health-probe in build/bin.
_CHECKOUT = Path(__file__).resolve().parents[2]
TOOLS_BIN = Path("build", "bin")


def _checkout_tool(name: str) -> Path | None:
    """build/bin's copy of a `make tools` program when the gateway runs from a checkout."""
    return _CHECKOUT / TOOLS_BIN / name if (_CHECKOUT / "Makefile").is_file() else None


def tool_command(name: str) -> str:
    """How to call one of `make tools`' programs: build/bin's copy when the gateway runs
    from a checkout (relative when started in it), else the name, as on the PATH."""
    local = _checkout_tool(name)
    if local is None:
        return name
    return str(TOOLS_BIN / name) if Path.cwd().resolve() == _CHECKOUT else str(local)


def _tools_hint() -> str:
    """The banner's line saying how to get the tools it names, while build/bin lacks them."""
    local = _checkout_tool("grpcurl")
    if local is None or local.exists():
        return ""
    return "  (no grpcurl yet? `make tools` puts grpcurl, ghz and grpc-health-probe in build/bin)\n"


def _tls_hint(config: GatewayConfig) -> str:
    """The banner's lines saying what the file names of :func:`grpcurl_flags` stand for."""
    if config.tls_cert is None:
        return ""
    hint = f"  CA.crt: the CA that signed {config.tls_cert}\n"
    if config.tls_client_ca is not None:
        hint += (
            "  CLIENT.crt, CLIENT.key: a client certificate signed by a CA of "
            f"{config.tls_client_ca}, and its key\n"
        )
    return hint


def _print_banner(config: GatewayConfig, port: int, upstream_url: str) -> None:
    target = f"{config.listen.host}:{port}"
    grpcurl = f"{tool_command('grpcurl')} {grpcurl_flags(config)}"
    probe = f"{tool_command('grpc-health-probe')} -addr {target}{health_probe_flags(config)}"
    # The demo client speaks plaintext only.
    demo = "" if config.tls_cert else f"  gagiteck-gateway demo --target {target}\n"
    security = (
        "" if config.tls_cert is None else " over mTLS" if config.tls_client_ca else " over TLS"
    )
    print(
        f"""
gagiteck-gateway is serving gRPC on {target}{security}
  upstream: the embedded Gagiteck emulator at {upstream_url} (open mode, in memory)
  set GATEWAY_UPSTREAM_URL to front a real API instead.

Try it:
  {grpcurl} {target} list
  {grpcurl} -d '{{"agent": {{"name": "Helper", "system_prompt": "You are terse."}}}}' \\
      {target} gagiteck.v1.AgentService/CreateAgent
  {probe}
{demo}{_tools_hint()}{_tls_hint(config)}
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
