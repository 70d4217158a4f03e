"""``gagiteck-gateway health``: is the gateway on this machine serving? Exit 0 if so, 1 if not.

It reads what ``serve`` reads — the same flags, ``GATEWAY_*`` and ``OTEL_*`` variables,
validated the same way — so a container's HEALTHCHECK follows ``GATEWAY_LISTEN`` wherever
it points. Where it asks depends on the listener:

* a plaintext gRPC port: ``grpc.health.v1.Health/Check`` for the whole server (``""``) on
  ``GATEWAY_LISTEN``; SERVING is healthy, anything else (NOT_SERVING while draining, no
  answer) is not;
* a TLS port (``GATEWAY_TLS_CERT``): ``GET /readyz`` on ``GATEWAY_ADMIN_LISTEN``, which
  answers 200 exactly while gRPC health says SERVING. A TLS client inside the container
  would need the CA that signed the listener's certificate and a name on it, and with mTLS
  a client certificate of its own, none of which the gateway holds; the admin port asks
  for none of them. With the admin port ``off`` a TLS listener cannot be checked from
  inside, and the command says so.

A wildcard listen address (``0.0.0.0``, ``::``) is asked on loopback. Proxies from the
environment are never used: the gateway is on this machine. Docker reserves exit code 2
of a HEALTHCHECK, so every failure, a bad setting included, exits 1 with one line on
stderr saying why.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from gateway.config.gateway import GatewayConfig, load_config
from gateway.config.parsers import ConfigError, HostPort
from gateway.config.settings import SETTINGS

DEFAULT_TIMEOUT: Final = 2.0
LOOPBACK: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}

HEALTHY: Final = 0
UNHEALTHY: Final = 1


@dataclass(frozen=True, slots=True)
class HealthTarget:
    """Where to ask: grpc.health.v1 on the gRPC port, or ``/readyz`` on the admin port."""

    via: Literal["grpc", "admin"]
    address: HostPort

    def __str__(self) -> str:
        if self.via == "grpc":
            return f"grpc.health.v1 at {self.address}"
        return f"http://{self.address}/readyz"


def add_health_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = commands.add_parser(
        "health",
        help="exit 0 when the gateway on this machine is serving, 1 when not (HEALTHCHECK)",
        description="Ask the gateway configured by the same flags and GATEWAY_* variables "
        "as serve whether it is serving: gRPC health on a plaintext GATEWAY_LISTEN, "
        "/readyz on GATEWAY_ADMIN_LISTEN when the gRPC port speaks TLS. Exit 0 when "
        "serving, 1 otherwise. Every flag of serve is accepted too.",
    )
    health.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"longest wait for the answer (default {DEFAULT_TIMEOUT:g})",
    )
    for setting in SETTINGS:
        health.add_argument(
            setting.flag, dest=setting.name, default=None, metavar="VALUE", help=argparse.SUPPRESS
        )


def run_health(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The exit code of ``gagiteck-gateway health``: 0 serving, 1 not (or cannot tell)."""
    overrides = {setting.name: getattr(args, setting.name) for setting in SETTINGS}
    try:
        if args.timeout <= 0:
            raise ConfigError("--timeout must be greater than 0")
        target = health_target(load_config(env, overrides))
    except ConfigError as exc:
        print(f"gagiteck-gateway health: {exc}", file=sys.stderr)
        return UNHEALTHY
    serving, answer = check(target, args.timeout)
    if serving:
        print(f"SERVING ({target})")
        return HEALTHY
    print(f"gagiteck-gateway health: not serving: {target}: {answer}", file=sys.stderr)
    return UNHEALTHY


def health_target(config: GatewayConfig) -> HealthTarget:
    """Where the gateway ``config`` describes answers for its health from this machine."""
    if config.tls_cert is None:
        return HealthTarget("grpc", on_this_machine(config.listen, "GATEWAY_LISTEN"))
    if config.admin_listen is None:
        raise ConfigError(
            "the gRPC port speaks TLS and GATEWAY_ADMIN_LISTEN is off: the health of a TLS "
            "listener is read from /readyz on the admin port; set GATEWAY_ADMIN_LISTEN"
        )
    return HealthTarget("admin", on_this_machine(config.admin_listen, "GATEWAY_ADMIN_LISTEN"))


def on_this_machine(listen: HostPort, variable: str) -> HostPort:
    """The address to reach a listener bound to ``listen`` from the same machine."""
    if listen.port == 0:
        raise ConfigError(f"{variable} has port 0, chosen at start: give a fixed port")
    return HostPort(LOOPBACK.get(listen.host, listen.host), listen.port)


def check(target: HealthTarget, timeout: float) -> tuple[bool, str]:
    """Whether ``target`` says SERVING within ``timeout`` seconds, and what it said."""
    if target.via == "grpc":
        return _check_grpc(target.address, timeout)
    return _check_readyz(target.address, timeout)


def _check_grpc(address: HostPort, timeout: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2

    # grpc honours http_proxy/grpc_proxy from the environment; the gateway is local.
    with grpc.insecure_channel(str(address), options=[("grpc.enable_http_proxy", 0)]) as channel:
        health_check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            answer = health_check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return False, f"{code.name if code else 'ERROR'}: {details}"
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    return serving, health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def _check_readyz(address: HostPort, timeout: float) -> tuple[bool, str]:
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # An http:// URL to a loopback address built above, never one from a caller.
        with no_proxy.open(f"http://{address}/readyz", timeout=timeout) as answer:
            return answer.status == 200, f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return False, str(exc.reason)
    except OSError as exc:  # a timeout while reading the answer
        return False, str(exc) or type(exc).__name__
