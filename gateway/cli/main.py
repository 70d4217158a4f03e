"""``gagiteck-gateway serve | emulator | demo | health``: the command line.

The environment is read here and nowhere else: flags, ``GATEWAY_*`` and the standard
``OTEL_*`` variables become a frozen :class:`~gateway.config.gateway.GatewayConfig`, and a
bad setting stops start-up with a message that says what to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from gateway.cli.health import add_health_parser, run_health
from gateway.cli.serve import run_emulator, run_loop, serve
from gateway.config.gateway import load_config, unknown_variables
from gateway.config.parsers import ConfigError
from gateway.config.settings import EMULATOR_DIALECTS, SETTINGS
from gateway.telemetry.logs import setup_logging
from gateway.transcoding.drift import UpstreamDrift
from gateway.transcoding.templates import RouteError
from gateway.version import __version__

log = logging.getLogger("gateway.config")


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
    emulator.add_argument(
        "--dialect",
        default="reference",
        choices=EMULATOR_DIALECTS,
        help="the API as its reference describes it, or as the deployed service answers",
    )

    check = commands.add_parser(
        "check-upstream",
        help="compare every annotated RPC with an upstream's OpenAPI document",
        description="Print each drift between the contract and the upstream, with what it "
        "means for callers; exit 1 when one is not in the accepted list.",
    )
    check.add_argument(
        "--openapi",
        default=None,
        metavar="FILE|URL",
        help="the upstream's OpenAPI document (default: GATEWAY_UPSTREAM_URL/openapi.json)",
    )
    check.add_argument(
        "--accepted", default=None, metavar="FILE", help="the accepted drift (default: built in)"
    )
    check.add_argument(
        "--all", action="store_true", dest="show_accepted", help="print accepted drift too"
    )

    add_health_parser(commands)

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
            setup_logging(config.log_level, config.log_format, config.redactor())
            for warning in unknown_variables(os.environ):
                log.warning(warning)
            if config.workers > 1:
                from gateway.cli.workers import run_workers

                return run_workers(config, lambda one: run_loop(serve(one), one.event_loop))
            run_loop(serve(config), config.event_loop)
        elif args.command == "health":
            return run_health(args, os.environ)
        elif args.command == "check-upstream":
            from gateway.cli.check import check_upstream

            config = load_config(os.environ)
            return check_upstream(config, args.openapi, args.accepted, args.show_accepted)
        elif args.command == "emulator":
            setup_logging("info", "text")
            asyncio.run(
                run_emulator(args.listen, not args.require_auth, tuple(args.api_key), args.dialect)
            )
        else:
            setup_logging("warning", "text")
            from gateway.cli.demo import run_demo

            return asyncio.run(run_demo(args.target, args.token))
    except ConfigError as exc:
        print(f"gagiteck-gateway: {exc}", file=sys.stderr)
        return 2
    except UpstreamDrift as exc:
        print(f"gagiteck-gateway: {exc}", file=sys.stderr)
        return 1
    except RouteError as exc:
        print(f"gagiteck-gateway: bad google.api.http rule: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gagiteck-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
