"""The gateway: every part wired together once, and its lifecycle.

:class:`Gateway` compiles the route table, builds each part from the frozen
:class:`~gateway.config.gateway.GatewayConfig` (the config hands out each part's own
settings), registers one generic handler per route (:mod:`gateway.server.handlers`),
health and reflection, and owns the order of start and stop.

Lifecycle: :meth:`Gateway.start` starts telemetry, opens the upstream pools and the port;
:meth:`Gateway.stop` turns health to NOT_SERVING, ends open streams and watches with
UNAVAILABLE (their callers reconnect elsewhere), lets in-flight unary calls finish within the
grace period, closes the pools, and flushes telemetry last. Both are safe to call twice.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.config.gateway import GatewayConfig
from gateway.server.admin import AdminServer
from gateway.server.descriptors import (
    contract_services,
    descriptor_set_services,
    enable_reflection,
)
from gateway.server.handlers import Handlers, UnknownMethods
from gateway.server.tls import CertificateFiles
from gateway.server.upstream_check import check_upstream
from gateway.streaming.relay import SseRelay
from gateway.streaming.watch import WatchHub
from gateway.streaming.webhooks import (
    LocalReplays,
    RedisReplays,
    ReplayGuard,
    WebhookVerifier,
)
from gateway.telemetry.provider import Telemetry
from gateway.traffic.collector import TrafficCollector
from gateway.traffic.control import TrafficControl
from gateway.traffic.shared import redis_client
from gateway.transcoding.codec import CodecRegistry
from gateway.transcoding.routes import RouteTable
from gateway.transcoding.unary import UnaryTranscoder
from gateway.upstream.streams import StreamClient
from gateway.upstream.unary import UnaryClient

log = logging.getLogger("gateway.server")


class State(enum.Enum):
    NEW = "new"
    SERVING = "serving"
    DRAINING = "draining"
    CLOSED = "closed"


class Gateway:
    """One gRPC server in front of one upstream."""

    def __init__(
        self,
        config: GatewayConfig,
        upstream_url: str,
        services: list[ServiceDescriptor] | None = None,
    ) -> None:
        self.config = config
        if services is None:
            services = contract_services() + descriptor_set_services(config.descriptor_sets)
        self.services = services
        self.routes = RouteTable.compile(services, CodecRegistry())
        self.telemetry = Telemetry(
            config.telemetry, redactor=config.redactor(), access_log=config.access_log
        )
        metrics = self.telemetry.metrics
        metrics.routes(route.route_template for route in self.routes)
        self.unary_client = UnaryClient(config.upstream_settings(upstream_url), self.telemetry)
        self.stream_client = StreamClient(
            config.upstream_settings(upstream_url, streams=True), self.telemetry
        )
        metrics.pool("unary", self.unary_client.connections_in_use, config.upstream_concurrency)
        metrics.pool("stream", self.stream_client.connections_in_use, config.stream_concurrency)
        self.traffic = TrafficControl(
            config.traffic_settings(), self.unary_client, self.stream_client
        )
        metrics.register(TrafficCollector(self.traffic))
        headers = config.upstream_headers()
        self.relay = SseRelay(self.traffic, headers, config.stream_settings(), metrics)
        self.watches = WatchHub(self.traffic, headers, config.watch_settings(), metrics)
        self.handlers = Handlers(
            UnaryTranscoder(self.traffic, headers, config.upstream_timeout, self.routes),
            self.relay,
            self.watches,
            self.telemetry,
            config.caller_keys(),
            client_certificates=config.tls_client_ca is not None,
            max_message_bytes=config.max_message_bytes,
        )
        self.admin = self._admin_server()
        self.health = health.aio.HealthServicer()
        self.state = State.NEW
        self.port = 0
        self._server: grpc.aio.Server | None = None

    def _admin_server(self) -> AdminServer | None:
        config = self.config
        if config.admin_listen is None:
            return None
        verifier = None
        if config.webhook_secret:
            # Replays are refused fleet-wide when the processes share a Redis.
            replays: ReplayGuard = (
                RedisReplays(redis_client(config.redis_url)) if config.redis_url else LocalReplays()
            )
            verifier = WebhookVerifier(
                config.webhook_secret, config.webhook_tolerance, replays=replays
            )
        return AdminServer(
            config.admin_listen,
            ready=lambda: self.state is State.SERVING,
            watches=self.watches,
            verifier=verifier,
            metrics=self.telemetry.metrics,
        )

    @property
    def upstream_url(self) -> str:
        return self.unary_client.base_url

    # -- lifecycle

    async def start(self) -> int:
        """Open the upstream pools and the port; returns the bound port."""
        if self.state is not State.NEW:
            return self.port
        self.telemetry.start()
        self.traffic.start()
        await self.unary_client.start()
        await self.stream_client.start()
        if self.config.check_upstream != "off":
            try:
                await check_upstream(self.config.check_upstream, self.unary_client, self.routes)
            except BaseException:
                await self.unary_client.close()
                await self.stream_client.close()
                raise
        server = grpc.aio.server(
            options=[
                # Twice the limit, so that the handlers see a message a little too large
                # and refuse it themselves, with details, an access line and the metrics
                # (handlers.py); beyond that gRPC refuses it unread.
                ("grpc.max_receive_message_length", 2 * self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
                ("grpc.so_reuseport", 1 if self.config.workers > 1 else 0),
                # The channelz service is not served, so its per-call accounting in the
                # gRPC core would be work nobody reads.
                ("grpc.enable_channelz", 0),
                *self._connection_age(),
            ]
        )
        self._register(server)
        try:
            await self._open(server)
        except BaseException:
            await server.stop(None)
            await self.unary_client.close()
            await self.stream_client.close()
            raise
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.state = State.SERVING
        log.info(
            "gateway serving",
            extra={
                "listen": f"{self.config.listen.host}:{self.port}",
                "upstream": self.upstream_url,
                "routes": len(self.routes),
            },
        )
        return self.port

    async def _open(self, server: grpc.aio.Server) -> None:
        config = self.config
        try:
            if config.tls_cert is not None and config.tls_key is not None:
                files = CertificateFiles(
                    config.tls_cert,
                    config.tls_key,
                    config.tls_client_ca,
                    interval=config.tls_reload_interval,
                )
                self.port = server.add_secure_port(str(config.listen), files.credentials())
            else:
                self.port = server.add_insecure_port(str(config.listen))
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(
                f"cannot listen on {self.config.listen}: the address is in use or not "
                "available (set GATEWAY_LISTEN)"
            )
        await server.start()
        self._server = server
        if self.admin is not None:
            try:
                await self.admin.start()
            except OSError as exc:
                raise OSError(
                    f"cannot listen on the admin address {self.config.admin_listen}: "
                    f"{exc.strerror or exc} (set GATEWAY_ADMIN_LISTEN, or 'off')"
                ) from exc

    async def stop(self, grace: float | None = None, delay: float | None = None) -> None:
        """NOT_SERVING; keep serving ``delay`` seconds so load balancers notice; then
        refuse new calls, let in-flight ones finish within ``grace`` seconds, close the pool.
        """
        if self.state in (State.DRAINING, State.CLOSED):
            return
        self.state = State.DRAINING
        grace = self.config.shutdown_grace if grace is None else grace
        delay = self.config.shutdown_delay if delay is None else delay
        await self.health.enter_graceful_shutdown()
        if delay > 0 and self._server is not None:
            await asyncio.sleep(delay)
        # Streams and watches have no natural end within the grace: they are ended now
        # (UNAVAILABLE, GATEWAY_DRAINING) so that their callers reconnect elsewhere at once.
        self.relay.drain()
        self.watches.drain()
        if self._server is not None:
            await self._server.stop(grace)
        await self.watches.close()
        await self.relay.close()
        await self.traffic.close()
        if self.admin is not None:
            await self.admin.close()
        await self.unary_client.close()
        await self.stream_client.close()
        await self.telemetry.close()
        self.state = State.CLOSED
        log.info("gateway stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def _connection_age(self) -> list[tuple[str, int]]:
        """GOAWAY after GATEWAY_MAX_CONNECTION_AGE (gRPC adds ±10% jitter), then the calls
        in flight get the shutdown grace to finish on the old connection."""
        age = self.config.max_connection_age
        if age <= 0:
            return []
        return [
            ("grpc.max_connection_age_ms", int(age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(self.config.shutdown_grace * 1000)),
        ]

    # -- registration

    def _register(self, server: grpc.aio.Server) -> None:
        by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
        for route in self.routes:
            service, method = route.full_method[1:].rsplit("/", 1)
            by_service.setdefault(service, {})[method] = self.handlers.method_handler(route)
        server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(service, handlers)
                for service, handlers in by_service.items()
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection(server, [*by_service, health.SERVICE_NAME])
        # Last: it answers every method the handlers above do not have.
        server.add_generic_rpc_handlers((UnknownMethods(self.telemetry),))

    async def _set_health(self, status: int) -> None:
        await self.health.set("", status)
        for service in self.services:
            await self.health.set(service.full_name, status)
