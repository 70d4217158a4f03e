"""The generic handlers: one per compiled route, and the one boundary where errors end.

No servicer is written per RPC: :func:`method_handler` builds a grpc.aio handler for a
route. Each handler is also the single error boundary: whatever a call raises is passed
through :func:`gateway.errors.to_status`, redacted, and answered with a code, a message
and ``google.rpc.Status`` details; nothing reaches the caller as UNKNOWN or as a
traceback. Each call is observed from inside its handler (:mod:`gateway.telemetry.server`):
the span, the metrics and the access line are prepared per route when the handler is made.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from gateway.call import read_metadata, request_id_of
from gateway.errors import to_status
from gateway.streaming.relay import SseRelay
from gateway.streaming.watch import WatchHub
from gateway.telemetry.provider import Telemetry
from gateway.telemetry.redaction import redact_status
from gateway.telemetry.server import RpcTelemetry, ServerCall
from gateway.transcoding.routes import Route
from gateway.transcoding.unary import UnaryTranscoder

log = logging.getLogger("gateway.server")

Context = grpc.aio.ServicerContext[Any, Any]


class Handlers:
    """What the handlers call: the unary transcoder, the SSE relay, the watch hub."""

    def __init__(
        self, unary: UnaryTranscoder, relay: SseRelay, watches: WatchHub, telemetry: Telemetry
    ) -> None:
        self.unary = unary
        self.relay = relay
        self.watches = watches
        self.telemetry = telemetry

    def method_handler(self, route: Route) -> grpc.RpcMethodHandler[Any, Any]:
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

    def _unary(self, route: Route) -> Callable[[Message, Context], Awaitable[Message]]:
        unary, telemetry = self.unary, self.telemetry
        rpc = RpcTelemetry(telemetry, route.full_method, server_streaming=False)

        async def handle(request: Message, context: Context) -> Message:
            metadata = context.invocation_metadata()
            call = rpc.begin(metadata)
            try:
                caller = read_metadata(metadata)
                call.request_id = caller.request_id
                context.set_trailing_metadata((("x-request-id", caller.request_id),))
                response = await unary.call(route, request, caller, context.time_remaining(), call)
                call.code = grpc.StatusCode.OK
                return response
            except Exception as exc:  # the boundary: every failure becomes a status
                await _abort(context, exc, call, route, telemetry)
                raise  # abort raises; this keeps type checkers informed
            finally:
                call.end(context.time_remaining())

        return handle

    def _streaming(self, route: Route) -> Callable[[Message, Context], AsyncIterator[Message]]:
        relay, watches, telemetry = self.relay, self.watches, self.telemetry
        rpc = RpcTelemetry(telemetry, route.full_method, server_streaming=True)

        async def handle(request: Message, context: Context) -> AsyncIterator[Message]:
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
                await _abort(context, exc, call, route, telemetry)
                raise
            finally:
                call.end(context.time_remaining())

        return handle


async def _abort(
    context: Context, exc: Exception, call: ServerCall, route: Route, telemetry: Telemetry
) -> None:
    request_id = call.request_id or request_id_of(context.invocation_metadata())
    call.request_id = request_id
    status = redact_status(to_status(exc, request_id), telemetry.redact)
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
