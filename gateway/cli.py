"""``gagiteck-gateway serve | emulator | demo``.

The environment is read here and nowhere else: flags, ``GATEWAY_*`` and the standard
``OTEL_*`` variables become a frozen :class:`~gateway.config.GatewayConfig`, and a bad
setting stops start-up with a message that says what to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from gateway import __version__
from gateway.config import SETTINGS, ConfigError, GatewayConfig, HostPort, load_config
from gateway.logs import setup_logging
from gateway.redaction import Redactor
from gateway.routes import RouteError

log = logging.getLogger("gateway.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gagiteck-gateway",
        description="gRPC gateway in front of the Gagiteck REST API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway (with the embedded emulator when no upstream is set)",
        description="Run the gateway. Every flag has a GATEWAY_* variable; flags win.",
    )
    for setting in SETTINGS:
        serve.add_argument(
            setting.flag,
            dest=setting.name,
            default=None,
            metavar="VALUE",
            help=f"{setting.help} [{setting.env}]",
        )

    emulator = commands.add_parser("emulator", help="run the Gagiteck REST emulator alone")
    emulator.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    emulator.add_argument(
        "--require-auth",
        action="store_true",
        help="refuse requests without credentials (default: open mode for demos)",
    )
    emulator.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a ggt_ API key accepted from the start (repeatable)",
    )

    demo = commands.add_parser(
        "demo", help="a sample client: agents, a run, a workflow executing to its end"
    )
    demo.add_argument(
        "--target",
        default=None,
        help="HOST:PORT of a running gateway (default: start one with the emulator in-process)",
    )
    demo.add_argument(
        "--token", default=None, help="credential sent as 'authorization: Bearer TOKEN'"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            overrides = {s.name: getattr(args, s.name) for s in SETTINGS}
            config = load_config(os.environ, overrides)
            secrets = Redactor((config.upstream_api_key, config.webhook_secret))
            setup_logging(config.log_level, config.log_format, secrets)
            if config.workers > 1:
                from gateway.workers import run_workers

                return run_workers(config, lambda one: run_loop(serve(one), one.event_loop))
            run_loop(serve(config), config.event_loop)
        elif args.command == "emulator":
            setup_logging("info", "text")
            asyncio.run(run_emulator(args.listen, not args.require_auth, tuple(args.api_key)))
        else:
            setup_logging("warning", "text")
            from gateway.demo import run_demo

            return asyncio.run(run_demo(args.target, args.token))
    except ConfigError as exc:
        print(f"gagiteck-gateway: {exc}", file=sys.stderr)
        return 2
    except RouteError as exc:
        print(f"gagiteck-gateway: bad google.api.http rule: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gagiteck-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


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
    paced = EmulatorConfig(open_mode=True, stream_delay_seconds=0.03, step_delay_seconds=0.4)
    async with running_emulator(paced, "127.0.0.1", 0) as emulator:
        yield emulator.url


async def serve(config: GatewayConfig) -> None:
    from gateway.server import Gateway

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


async def run_emulator(listen: str, open_mode: bool, api_keys: tuple[str, ...]) -> None:
    from gateway.config import parse_host_port
    from gateway.emulator import EmulatorConfig, serve_forever

    try:
        address = parse_host_port(listen)
    except ValueError as exc:
        raise ConfigError(f"--listen={listen!r}: {exc}") from exc
    await serve_forever(
        EmulatorConfig(open_mode=open_mode, api_keys=api_keys), address.host, address.port
    )
