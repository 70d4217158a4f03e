"""The generic handlers: one per compiled route, and the one boundary where errors end.

No servicer is written per RPC: :func:`method_handler` builds a grpc.aio handler for a
route. Each handler is also the single error boundary: whatever a call raises is passed
through :func:`gateway.status.to_status`, redacted, and answered with a code, a message
and ``google.rpc.Status`` details; nothing reaches the caller as UNKNOWN or as a
traceback. Each call is observed from inside its handler (:mod:`gateway.telemetry.server`):
the span, the metrics and the access line are prepared per route when the handler is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf.message import Message

from gateway.call import CallerKeys, read_metadata, request_id_of
from gateway.error_body import FieldViolation
from gateway.errors import FailureReason, GatewayError, InvalidRequest, Refused
from gateway.server.tls import client_identity
from gateway.status import to_status
from gateway.streaming.relay import SseRelay
from gateway.streaming.watch import WatchHub
from gateway.telemetry.provider import Telemetry
from gateway.telemetry.redaction import redact_status
from gateway.telemetry.server import RpcTelemetry, ServerCall
from gateway.transcoding.routes import Route
from gateway.transcoding.unary import UnaryTranscoder

log = logging.getLogger("gateway.server")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Request: TypeAlias = "Message | Undecodable"


class Handlers:
    """What the handlers call: the unary transcoder, the SSE relay, the watch hub."""

    def __init__(
        self,
        unary: UnaryTranscoder,
        relay: SseRelay,
        watches: WatchHub,
        telemetry: Telemetry,
        keys: CallerKeys,
        client_certificates: bool = False,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.unary = unary
        self.relay = relay
        self.watches = watches
        self.telemetry = telemetry
        self.keys = keys
        self.client_certificates = client_certificates
        self.max_message_bytes = max_message_bytes
        passthrough = unary.headers.passthrough
        self.forward = passthrough.forward
        self.returning = bool(passthrough.returned)

    def method_handler(self, route: Route) -> grpc.RpcMethodHandler[Any, Any]:
        deserialize = _lenient(route.request_codec.cls, self.max_message_bytes)
        serialize: Callable[[Message], bytes] = route.response_codec.cls.SerializeToString
        if route.server_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(route),
                request_deserializer=deserialize,
                response_serializer=serialize,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(route),
            request_deserializer=deserialize,
            response_serializer=serialize,
        )

    def _unary(self, route: Route) -> Callable[[Request, Context], Awaitable[Message]]:
        unary, telemetry, keys = self.unary, self.telemetry, self.keys
        connection = _connection_facts(self.client_certificates)
        forward, returning = self.forward, self.returning
        limit = self.max_message_bytes
        rpc = RpcTelemetry(telemetry, route.full_method, server_streaming=False)

        async def handle(request: Request, context: Context) -> Message:
            metadata = context.invocation_metadata()
            call = rpc.begin(metadata)
            try:
                caller = read_metadata(metadata, keys, lambda: connection(context), forward)
                call.request_id = caller.request_id
                context.set_trailing_metadata((("x-request-id", caller.request_id),))
                if isinstance(request, Undecodable):
                    raise request.error
                returned: list[tuple[str, str]] | None = [] if returning else None
                response = await unary.call(
                    route, request, caller, context.time_remaining(), call, returned
                )
                if response.ByteSize() > limit:
                    raise _too_large("answer", response.ByteSize(), limit)
                if returned:
                    await context.send_initial_metadata(returned)
                call.code = grpc.StatusCode.OK
                return response
            except Exception as exc:  # the boundary: every failure becomes a status
                await _abort(context, exc, call, route, telemetry)
                raise  # abort raises; this keeps type checkers informed
            finally:
                call.end(context.time_remaining())

        return handle

    def _streaming(self, route: Route) -> Callable[[Request, Context], AsyncIterator[Message]]:
        relay, watches, telemetry, keys = self.relay, self.watches, self.telemetry, self.keys
        connection = _connection_facts(self.client_certificates)
        forward = self.forward
        # The answer's headers are known once the stream is open: the response's header
        # metadata then waits for them (watches share their polls, and return none).
        returning = self.returning and route.sse is not None
        limit = self.max_message_bytes
        rpc = RpcTelemetry(telemetry, route.full_method, server_streaming=True)

        async def handle(request: Request, context: Context) -> AsyncIterator[Message]:
            metadata = context.invocation_metadata()
            call = rpc.begin(metadata)
            try:
                caller = read_metadata(metadata, keys, lambda: connection(context), forward)
                call.request_id = caller.request_id
                if isinstance(request, Undecodable):
                    raise request.error
                request_id = (("x-request-id", caller.request_id),)
                returned: list[tuple[str, str]] | None = [] if returning else None
                # The request id goes in the trailers, as for unary calls. A relay sends no
                # header metadata of its own (gRPC sends the empty headers with the first
                # event, without a round of its own before the upstream is even asked),
                # unless answer headers are returned: then they go just before it. A watch
                # may wait long for its first message: it sends the id at once as well.
                context.set_trailing_metadata(request_id)
                batches: AsyncGenerator[Sequence[Message], None]
                if route.sse is not None:
                    batches = relay.relay(
                        route, request, caller, context.time_remaining(), call, returned
                    )
                else:
                    await context.send_initial_metadata(request_id)
                    batches = _one_by_one(watches.watch(route, request, caller, call))
                async with contextlib.aclosing(batches):
                    async for batch in batches:
                        for message in batch:
                            if message.ByteSize() > limit:
                                raise _too_large("event", message.ByteSize(), limit)
                            if returned is not None:
                                await context.send_initial_metadata((*request_id, *returned))
                                returned = None
                            call.sent()
                            yield message
                call.code = grpc.StatusCode.OK
            except Exception as exc:  # the boundary, for streams
                await _abort(context, exc, call, route, telemetry)
                raise
            finally:
                call.end(context.time_remaining())

        return handle


def _connection_facts(
    client_certificates: bool,
) -> Callable[[Context], tuple[str | None, str | None]]:
    """What tells a call's connection apart: its verified client certificate (only when
    the listener asks for them) and its peer address."""
    if client_certificates:
        return lambda context: (client_identity(context), context.peer())
    return lambda context: (None, context.peer())


class Undecodable:
    """What the deserializer hands the handler for request bytes it refuses (not a
    message, or larger than the limit), so that the refusal goes through the handler's
    boundary (a status with details, an access line, the metrics) instead of failing
    inside gRPC as UNKNOWN or without a trace."""

    __slots__ = ("error",)

    def __init__(self, error: GatewayError) -> None:
        self.error = error


def _too_large(what: str, size: int, limit: int) -> Refused:
    """A message larger than gRPC would send: refused here, with details, rather than by
    gRPC's serializer without any."""
    return Refused(
        f"the upstream's {what} makes a message of {size} bytes, more than the {limit} a "
        "message may be (GATEWAY_MAX_MESSAGE_BYTES)",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        FailureReason.MESSAGE_TOO_LARGE,
        metadata={"limit": str(limit), "size": str(size)},
    )


def _lenient(cls: type[Message], limit: int) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name
    parse = cls.FromString

    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return Undecodable(
                Refused(
                    f"the request is {len(data)} bytes, more than the {limit} a message may be "
                    "(GATEWAY_MAX_MESSAGE_BYTES)",
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    FailureReason.MESSAGE_TOO_LARGE,
                    metadata={"limit": str(limit), "size": str(len(data))},
                )
            )
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or a RecursionError on deep nesting
            problem = f"the request is not a valid {name}: {type(exc).__name__}"
            return Undecodable(InvalidRequest(problem, [FieldViolation("request", problem)]))

    return deserialize


UNKNOWN_METHOD_LABEL: Final = "/unknown/unknown"
"""How calls of methods the gateway does not serve appear in metrics and spans."""
MAX_METHOD_SHOWN: Final = 200


class UnknownMethods(grpc.GenericRpcHandler):
    """Answers a method no service of the gateway has — registered last, so it sees only
    those — with UNIMPLEMENTED and details, an access line and the metrics (under one
    label: a caller's made-up names must not each make a series)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = str(handler_call_details.method)[:MAX_METHOD_SHOWN]
        shown = "".join(ch if " " < ch <= "~" else "?" for ch in method)
        rpc = RpcTelemetry(self.telemetry, shown or "/?/?", False, UNKNOWN_METHOD_LABEL)
        telemetry = self.telemetry

        async def refuse(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            call = rpc.begin(context.invocation_metadata())
            error = Refused(
                f"the gateway serves no method {shown}",
                grpc.StatusCode.UNIMPLEMENTED,
                FailureReason.UNKNOWN_METHOD,
                metadata={"method": shown},
            )
            try:
                await _abort_call(context, error, call, telemetry)
            finally:
                call.end(context.time_remaining())
            yield b""  # never reached: abort raises

        return grpc.stream_stream_rpc_method_handler(refuse)


async def _one_by_one(
    messages: AsyncGenerator[Message, None],
) -> AsyncGenerator[Sequence[Message], None]:
    """A watch's messages as batches of one, the shape the relay gives."""
    async with contextlib.aclosing(messages):
        async for message in messages:
            yield (message,)


async def _abort(
    context: Context, exc: Exception, call: ServerCall, route: Route, telemetry: Telemetry
) -> None:
    await _abort_call(context, exc, call, telemetry, route.full_method)


async def _abort_call(
    context: Context, exc: Exception, call: ServerCall, telemetry: Telemetry, method: str = ""
) -> None:
    """End the call with the status ``exc`` stands for: the one way out of every handler."""
    request_id = call.request_id or request_id_of(context.invocation_metadata())
    call.request_id = request_id
    status = redact_status(to_status(exc, request_id), telemetry.redact)
    call.failed(status.code, status.message, exc)
    if status.code is grpc.StatusCode.INTERNAL and not hasattr(exc, "reason"):
        log.error(
            "unexpected failure in %s (request id %s)",
            method or call.rpc.name,
            request_id,
            exc_info=exc,
        )
    call.end(context.time_remaining())
    if context.done():  # the deadline passed or the caller left meanwhile: nobody to tell
        raise asyncio.CancelledError
    try:
        await context.abort(status.code, status.message, status.trailing_metadata)
    except grpc.aio.AbortError:
        raise
    except Exception:  # the call ended between the check and the abort (a deadline race)
        raise asyncio.CancelledError from None
