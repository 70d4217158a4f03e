"""The gRPC server: generic handlers for every annotated RPC, health, reflection, lifecycle.

No servicer is written per RPC: :class:`Gateway` registers one handler per compiled route.
Each handler is also the single error boundary: whatever a call raises is passed through
:func:`gateway.errors.to_status` and answered with a code, a message and
``google.rpc.Status`` details; nothing reaches the caller as UNKNOWN or as a traceback.

Every call is observed by :mod:`gateway.telemetry` from inside its handler: the server
span, the duration and in-flight metrics and the access-log line are prepared per route at
registration, so a call costs a clock read, a few counter updates and (when tracing) its
span. Health checks and reflection are registered without it and are not traced.

Lifecycle: :meth:`Gateway.start` starts telemetry, opens the upstream pools and the port;
:meth:`Gateway.stop` turns health to NOT_SERVING, lets in-flight calls finish within the
grace period, closes the pools, and flushes telemetry last. Both are safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway.admin import AdminServer
from gateway.auth import CredentialPolicy
from gateway.codec import CodecRegistry
from gateway.config import GatewayConfig
from gateway.errors import CallStatus, to_status
from gateway.limits import CostTable, RateLimit
from gateway.metadata import read_metadata, request_id_of
from gateway.redaction import Redactor
from gateway.retry import RetryPolicy
from gateway.routes import Route, RouteTable, http_rule
from gateway.streaming import SseRelay, StreamSettings
from gateway.telemetry import Call, Telemetry
from gateway.traffic import TrafficControl, TrafficSettings
from gateway.transcoder import Transcoder
from gateway.upstream import Upstream, UpstreamSettings
from gateway.watch import WatchHub, WatchSettings
from gateway.webhooks import WebhookVerifier

log = logging.getLogger("gateway.server")

CONTRACT_PACKAGE = "gagiteck.v1"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def traffic_settings(config: GatewayConfig) -> TrafficSettings:
    """The traffic-control part of the configuration."""

    def limit(rps: float | None, burst: float | None) -> RateLimit | None:
        return None if rps is None else RateLimit(rps, burst if burst is not None else rps)

    return TrafficSettings(
        global_limit=limit(config.rate_limit_rps, config.rate_limit_burst),
        caller_limit=limit(config.caller_rate_limit_rps, config.caller_rate_limit_burst),
        costs=CostTable(overrides=dict(config.method_costs)),
        concurrency=config.upstream_concurrency,
        queue=config.upstream_queue,
        redis_url=config.redis_url,
        replicas=config.replicas,
        retry=RetryPolicy(
            max_attempts=config.retry_max_attempts,
            base=config.retry_base,
            cap=config.retry_cap,
        ),
        retry_budget_ratio=config.retry_budget_ratio,
        breaker_failures=config.breaker_failures,
        breaker_open_seconds=config.breaker_open_seconds,
    )


class State(enum.Enum):
    NEW = "new"
    SERVING = "serving"
    DRAINING = "draining"
    CLOSED = "closed"


# --------------------------------------------------------------------------- services


def contract_services() -> list[ServiceDescriptor]:
    """Every service of the generated ``gagiteck.v1`` modules."""
    package = importlib.import_module(CONTRACT_PACKAGE)
    services: list[ServiceDescriptor] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{CONTRACT_PACKAGE}.{info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def descriptor_set_services(paths: Iterable[str]) -> list[ServiceDescriptor]:
    """Load FileDescriptorSets into the default pool; return their annotated services."""
    pool = descriptor_pool.Default()
    services: list[ServiceDescriptor] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read descriptor set {path}: {exc.strerror}") from exc
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        for file_proto in fds.file:
            try:
                pool.FindFileByName(file_proto.name)
            except KeyError:
                pool.Add(file_proto)
        for file_proto in fds.file:
            file_desc = pool.FindFileByName(file_proto.name)
            for service in file_desc.services_by_name.values():
                if any(http_rule(m) is not None for m in service.methods):
                    services.append(service)
    return services


# --------------------------------------------------------------------------- the gateway


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
            config.telemetry,
            redactor=Redactor((config.upstream_api_key, config.webhook_secret)),
            access_log=config.access_log,
        )
        metrics = self.telemetry.metrics
        metrics.routes(route.route_template for route in self.routes)

        def pool(size: int, name: str) -> Upstream:
            settings = UpstreamSettings(
                base_url=upstream_url,
                pool_size=size,
                connect_timeout=config.connect_timeout,
                max_body_bytes=max(config.max_message_bytes * 4, 1 << 20),
            )
            return Upstream(settings, self.telemetry, name)

        self.upstream = pool(config.upstream_concurrency, "unary")
        self.traffic = TrafficControl(traffic_settings(config), self.upstream.host)
        metrics.traffic(self.traffic)
        self.transcoder = Transcoder(
            self.upstream,
            CredentialPolicy(config.auth_mode, config.upstream_api_key),
            config.upstream_timeout,
            self.traffic,
            config.idempotency_keys,
        )
        # Long-lived streams get a pool of their own so they cannot starve unary calls.
        self.stream_upstream = pool(config.stream_concurrency, "stream")
        metrics.pool("unary", self.upstream.connections_in_use, config.upstream_concurrency)
        metrics.pool("stream", self.stream_upstream.connections_in_use, config.stream_concurrency)
        self.relay = SseRelay(
            self.stream_upstream,
            self.transcoder,
            StreamSettings(
                idle_timeout=config.stream_idle_timeout,
                cancel_upstream=config.stream_cancel_upstream,
                max_event_bytes=config.max_message_bytes,
            ),
            metrics,
        )
        # With webhooks waking the watchers, polling backs off to a safety net.
        self.watches = WatchHub(
            self.transcoder,
            WatchSettings(
                min_interval=config.watch_min_interval,
                max_interval=(
                    config.watch_safety_interval
                    if config.webhook_secret
                    else config.watch_max_interval
                ),
            ),
            metrics,
        )
        self.admin = (
            AdminServer(
                config.admin_listen,
                ready=lambda: self.state is State.SERVING,
                watches=self.watches,
                verifier=(
                    WebhookVerifier(config.webhook_secret, config.webhook_tolerance)
                    if config.webhook_secret
                    else None
                ),
                metrics=metrics,
                reuse_port=config.workers > 1,
            )
            if config.admin_listen is not None
            else None
        )
        self.health = health.aio.HealthServicer()
        self.state = State.NEW
        self.port = 0
        self._server: grpc.aio.Server | None = None

    # -- lifecycle

    async def start(self) -> int:
        """Open the upstream pool and the port; returns the bound port."""
        if self.state is not State.NEW:
            return self.port
        self.telemetry.start()
        await self.upstream.start()
        await self.stream_upstream.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
                ("grpc.so_reuseport", 1 if self.config.workers > 1 else 0),
                # The channelz service is not served, so its per-call accounting in the
                # gRPC core would be work nobody reads.
                ("grpc.enable_channelz", 0),
            ]
        )
        self._register(server)
        try:
            try:
                self.port = server.add_insecure_port(str(self.config.listen))
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
        except BaseException:
            await server.stop(None)
            await self.upstream.close()
            await self.stream_upstream.close()
            raise
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.state = State.SERVING
        log.info(
            "gateway serving",
            extra={
                "listen": f"{self.config.listen.host}:{self.port}",
                "upstream": self.upstream.base_url,
                "routes": len(self.routes),
            },
        )
        return self.port

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
        if self._server is not None:
            await self._server.stop(grace)
        await self.watches.close()
        await self.relay.close()
        await self.traffic.close()
        if self.admin is not None:
            await self.admin.close()
        await self.upstream.close()
        await self.stream_upstream.close()
        await self.telemetry.close()
        self.state = State.CLOSED
        log.info("gateway stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # -- registration

    def _register(self, server: grpc.aio.Server) -> None:
        by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
        for route in self.routes:
            service, method = route.full_method[1:].rsplit("/", 1)
            by_service.setdefault(service, {})[method] = self._handler(route)
        server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(service, handlers)
                for service, handlers in by_service.items()
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*by_service, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1]
        reflection.enable_server_reflection(names, server)
        _add_reflection_v1(server, names)

    async def _set_health(self, status: int) -> None:
        await self.health.set("", status)
        for service in self.services:
            await self.health.set(service.full_name, status)

    def _handler(self, route: Route) -> grpc.RpcMethodHandler[Any, Any]:
        request_cls = route.request_codec.cls
        serialize: Callable[[Message], bytes] = route.response_codec.cls.SerializeToString
        if route.server_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(route),
                request_deserializer=request_cls.FromString,
                response_serializer=serialize,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(route),
            request_deserializer=request_cls.FromString,
            response_serializer=serialize,
        )

    def _unary(
        self, route: Route
    ) -> Callable[[Message, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]:
        transcoder, redact = self.transcoder, self.telemetry.redact
        rpc = self.telemetry.rpc(route.full_method, server_streaming=False)

        async def handle(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            metadata = context.invocation_metadata()
            call = rpc.begin(metadata)
            try:
                caller = read_metadata(metadata)
                call.request_id = caller.request_id
                context.set_trailing_metadata((("x-request-id", caller.request_id),))
                response = await transcoder.unary(
                    route, request, caller, context.time_remaining(), call
                )
                call.code = grpc.StatusCode.OK
                return response
            except Exception as exc:  # the boundary: every failure becomes a status
                await _abort(context, exc, call, metadata, route, redact)
                raise  # abort raises; this keeps type checkers informed
            finally:
                call.end(context.time_remaining())

        return handle

    def _streaming(
        self, route: Route
    ) -> Callable[[Message, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Message]]:
        relay, watches, redact = self.relay, self.watches, self.telemetry.redact
        rpc = self.telemetry.rpc(route.full_method, server_streaming=True)

        async def handle(
            request: Message, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            metadata = context.invocation_metadata()
            call = rpc.begin(metadata)
            try:
                caller = read_metadata(metadata)
                call.request_id = caller.request_id
                await context.send_initial_metadata((("x-request-id", caller.request_id),))
                if route.sse is not None:
                    messages = relay.relay(route, request, caller, context.time_remaining(), call)
                else:
                    messages = watches.watch(route, request, caller, call)
                async with contextlib.aclosing(messages):
                    async for message in messages:
                        call.sent()
                        yield message
                call.code = grpc.StatusCode.OK
            except Exception as exc:  # the boundary, for streams
                await _abort(context, exc, call, metadata, route, redact)
                raise
            finally:
                call.end(context.time_remaining())

        return handle


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any],
    exc: Exception,
    call: Call,
    metadata: grpc.aio.Metadata | None,
    route: Route,
    redact: Redactor,
) -> None:
    request_id = call.request_id or request_id_of(metadata)
    call.request_id = request_id
    status = _redacted(to_status(exc, request_id), redact)
    call.failed(status.code, status.message, exc)
    if status.code is grpc.StatusCode.INTERNAL and not hasattr(exc, "reason"):
        log.error(
            "unexpected failure in %s (request id %s)",
            route.full_method,
            request_id,
            exc_info=exc,
        )
    call.end(context.time_remaining())
    await context.abort(status.code, status.message, status.trailing_metadata)


def _redacted(status: CallStatus, redact: Redactor) -> CallStatus:
    """The status with anything credential-like taken out of its message and details.

    Upstream error texts reach the caller through here; they are checked with a few
    substring tests and only rewritten when one of them hits.
    """
    details = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    message = redact(status.message)
    suspect = any(isinstance(d, bytes) and redact.suspects(d) for d in details)
    if message == status.message and not suspect:
        return status
    trailing: list[tuple[str, str | bytes]] = []
    for key, value in status.trailing_metadata:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            rich = status_pb2.Status.FromString(value)
            rich.message = message
            for packed in rich.details:
                detail = _unpack(packed)
                if detail is not None:
                    _scrub(detail, redact)
                    packed.Pack(detail)
            value = rich.SerializeToString()
        trailing.append((key, value))
    return CallStatus(status.code, message, tuple(trailing))


def _unpack(packed: Any) -> Message | None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:
        return None
    detail: Message = message_factory.GetMessageClass(descriptor)()
    packed.Unpack(detail)
    return detail


def _scrub(message: Message, redact: Redactor) -> None:
    """Redact every string in ``message``, nested messages and maps included."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [redact(v) for v in value]
            else:
                setattr(message, field.name, redact(value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            assert entry is not None
            if entry.GetOptions().map_entry:
                if entry.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING:
                    for key in list(value):
                        value[key] = redact(value[key])
                else:
                    for item in value.values():
                        _scrub(item, redact)
            elif field.is_repeated:
                for item in value:
                    _scrub(item, redact)
            else:
                _scrub(value, redact)


def _add_reflection_v1(server: grpc.aio.Server, names: list[str]) -> None:
    """Serve reflection v1 too: its messages are wire-identical to v1alpha's."""
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )
