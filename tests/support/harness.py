"""Real servers on port 0 for the tests: the gateway, and small scripted upstreams."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import status_pb2

from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import HostPort
from gateway.server.gateway import Gateway


@dataclasses.dataclass
class RunningGateway:
    gateway: Gateway
    target: str
    channel: grpc.aio.Channel


@contextlib.asynccontextmanager
async def serving_gateway(
    upstream_url: str,
    services: list[ServiceDescriptor] | None = None,
    **settings: Any,
) -> AsyncIterator[RunningGateway]:
    settings.setdefault("admin_listen", None)
    config = GatewayConfig(listen=HostPort("127.0.0.1", 0), **settings)
    gateway = Gateway(config, upstream_url, services)
    port = await gateway.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield RunningGateway(gateway, target, channel)
    finally:
        await channel.close()
        await gateway.stop(grace=1.0, delay=0)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:0; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in grpc-status-details-bin."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError("no grpc-status-details-bin in the trailers")


def details_of(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The unpacked details by type name (ErrorInfo, BadRequest, …)."""
    from google.rpc import error_details_pb2

    found: dict[str, Any] = {}
    for packed in rich_status(error).details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
            error_details_pb2.RequestInfo,
        ):
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                assert cls.__name__ not in found, f"two {cls.__name__} details"
                found[cls.__name__] = message
    return found
