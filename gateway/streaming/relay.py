"""Server-streaming relays: an upstream ``text/event-stream`` as typed gRPC messages.

Each parsed event is decoded and yielded at once; nothing is buffered beyond the SSE
parser's pending line. Backpressure is end to end: the handler is an async generator, so
grpc.aio waits for the caller's flow-control window before asking for the next message,
the relay stops reading, aiohttp's read buffer fills and pauses the socket, and the
upstream's writes block.

How a stream ends:

* a terminal event (``run.completed``) → OK, after relaying it;
* an ``error`` event → the status its ``{detail, code, status}`` maps to;
* the upstream closes early or mid-event → UNAVAILABLE, ErrorInfo ``events_relayed``;
* silence past the idle limit (heartbeat comments count as activity) → DEADLINE_EXCEEDED;
* the caller cancels or its deadline passes → the upstream connection is closed at
  once and, when the run id is known, the run is cancelled upstream in the background
  (a POST that goes through traffic control like every other request);
* the gateway starts draining (:meth:`SseRelay.drain`) → UNAVAILABLE, reason
  ``GATEWAY_DRAINING``, at once rather than at the end of the shutdown grace, and the
  run is cancelled as above: the caller opens it again on another replica.

The stream is opened through :meth:`gateway.traffic.control.TrafficControl.open_stream`:
admitted by the breaker, the upstream window and the rate limits, on the stream pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import orjson
from google.protobuf.message import Message

from gateway.call import CallerMetadata, CallTrace
from gateway.errors import (
    FailureReason,
    GatewayError,
    UpstreamAnswer,
    UpstreamHTTPError,
    UpstreamTransportError,
    draining,
)
from gateway.streaming.settings import StreamSettings
from gateway.streaming.sse import Comment, EventTooLarge, SSEParser
from gateway.telemetry.metrics import Metrics
from gateway.traffic.control import TrafficControl
from gateway.traffic.retry import Failure, FailureKind, classify_failure
from gateway.transcoding.decode import decode_answer
from gateway.transcoding.headers import UpstreamHeaders
from gateway.transcoding.json_values import TooDeep
from gateway.transcoding.routes import Route
from gateway.transcoding.stream_rules import SseSpec
from gateway.transcoding.templates import segment_problem
from gateway.upstream.request import UpstreamRequest
from gateway.upstream.streams import UpstreamStream

log = logging.getLogger("gateway.streaming")

_EVENT_STREAM = "text/event-stream"
ADMISSION_WAIT_WITHOUT_DEADLINE = 60.0
"""Longest wait for the rate limits before opening a stream whose caller set no deadline."""


class SseRelay:
    """Relays SSE answers for routes with an :class:`SseSpec`."""

    def __init__(
        self,
        traffic: TrafficControl,
        headers: UpstreamHeaders,
        settings: StreamSettings,
        metrics: Metrics,
    ) -> None:
        self.traffic = traffic
        self.headers = headers
        self.settings = settings
        self.host = traffic.streams.host
        self._open = metrics.sse_open
        self._cancellations: set[asyncio.Task[None]] = set()
        self._live: dict[_RelayState, UpstreamStream] = {}
        self._draining = False

    async def relay(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        time_remaining: float | None,
        trace: CallTrace | None = None,
        returned: list[tuple[str, str]] | None = None,
    ) -> AsyncGenerator[list[Message], None]:
        """The call's messages, in batches: the events each chunk of the upstream's answer
        completed (one pass through this chain of generators per chunk, not per event);
        ``trace`` learns how many events were relayed, and ``returned`` (when given) the
        answer's headers that GATEWAY_RETURN_HEADERS names, before the first batch."""
        spec = route.sse
        assert spec is not None
        headers = self.headers.for_call(route.http_method, route.has_body, caller)
        headers["Accept"] = f"{_EVENT_STREAM}, application/json;q=0.5"
        upstream_request = route.build(request, headers)
        state = _RelayState(route, spec, request)
        clock = self.traffic.clock
        deadline = None if time_remaining is None else clock.monotonic() + time_remaining
        retries = self.traffic.retries(upstream_request, deadline)
        number = 1
        with self.traffic.open_streams.hold(caller.caller, "stream"):
            try:
                while True:
                    attempt = self._attempt(
                        upstream_request, state, caller, deadline, trace, returned, number
                    )
                    try:
                        async with contextlib.aclosing(attempt) as batches:
                            async for batch in batches:
                                yield batch
                        return
                    except GatewayError as exc:
                        if state.drained:
                            raise draining("stream") from None
                        failure = _failure_of(exc, state)
                        delay = None if state.relayed else retries.delay_after(number, failure)
                        if delay is None:
                            final = retries.final(exc, failure, number)
                            if isinstance(final, GatewayError):
                                final.context["events_relayed"] = str(state.relayed)
                            if final is exc:
                                raise
                            raise final from exc
                    # Nothing was relayed yet: the stream is opened again, under the rules,
                    # budget and idempotency key of a unary call's retries.
                    await clock.sleep(delay)
                    number += 1
            finally:
                if not state.completed:
                    self._cancel_upstream(state, caller, trace)

    async def _attempt(
        self,
        upstream_request: UpstreamRequest,
        state: _RelayState,
        caller: CallerMetadata,
        deadline: float | None,
        trace: CallTrace | None,
        returned: list[tuple[str, str]] | None,
        number: int,
    ) -> AsyncGenerator[list[Message], None]:
        """Opening number ``number`` of the stream, and what it relays (in batches)."""
        if self._draining:
            raise draining("stream")
        route, spec = state.route, state.spec
        clock = self.traffic.clock
        admit_by = clock.monotonic() + ADMISSION_WAIT_WITHOUT_DEADLINE
        async with self.traffic.open_stream(
            upstream_request,
            grpc_method=route.full_method,
            caller=caller.caller,
            deadline=admit_by if deadline is None else deadline,
            timeout=None if deadline is None else max(deadline - clock.monotonic(), 0.0),
            idle_timeout=self.settings.idle_timeout,
            trace=trace,
            attempt=number,
        ) as stream:
            if self._draining:
                raise draining("stream")
            if returned is not None:
                returned[:] = self.headers.passthrough.returned_from(stream.headers)
            self._live[state] = stream
            try:
                if _EVENT_STREAM not in stream.content_type:
                    yield [await self._plain_answer(route, spec, stream)]
                    state.completed = True
                    return
                self._open.inc()
                try:
                    async for batch in self._events(stream, state):
                        yield batch
                finally:
                    self._open.dec()
                    if trace is not None:
                        trace.events = state.relayed
            finally:
                self._live.pop(state, None)

    def drain(self) -> None:
        """End every open relay with UNAVAILABLE (GATEWAY_DRAINING), and any opened later."""
        self._draining = True
        for state, stream in list(self._live.items()):
            state.drained = True
            stream.abort()

    async def _events(
        self, stream: UpstreamStream, state: _RelayState
    ) -> AsyncIterator[list[Message]]:
        """The messages of each chunk's complete events, as one batch; what came before a
        failure in the same chunk is yielded before the failure is raised."""
        parser = SSEParser(self.settings.max_event_bytes)
        spec = state.spec
        try:
            async for chunk in stream.chunks():
                batch: list[Message] = []
                for item in parser.feed(chunk):
                    if isinstance(item, Comment):
                        continue
                    if item.type == spec.error_event:
                        if batch:
                            yield batch
                        raise _error_event(item.data, state, self.host)
                    try:
                        message = state.decode(item.type, item.data, item.id)
                    except TooDeep as exc:
                        if batch:
                            yield batch
                        raise UpstreamTransportError(
                            f"an upstream event holds {exc}",
                            FailureReason.UPSTREAM_BODY_UNREADABLE,
                            self.host,
                            state.route.route_template,
                        ) from exc
                    if message is None:
                        continue
                    state.relayed += 1
                    batch.append(message)
                    if item.type in spec.terminal_events:
                        state.completed = True  # the run is over upstream: nothing to cancel
                        yield batch
                        return
                if batch:
                    yield batch
        except EventTooLarge as exc:
            raise UpstreamTransportError(
                f"an upstream event exceeds {exc.limit} bytes",
                FailureReason.UPSTREAM_EVENT_TOO_LARGE,
                self.host,
                state.route.route_template,
            ) from exc
        cut = parser.finish()
        where = "in the middle of an event" if cut else "before the run completed"
        raise UpstreamTransportError(
            f"the upstream stream ended {where} after {state.relayed} events",
            FailureReason.UPSTREAM_STREAM_CUT,
            self.host,
            state.route.route_template,
        )

    async def _plain_answer(self, route: Route, spec: SseSpec, stream: UpstreamStream) -> Message:
        """A 2xx answer that is not an event stream: one JSON body relayed as the json_event."""
        answer = await stream.read()
        member = spec.members.get(spec.json_event)
        if member is None:
            raise UpstreamTransportError(
                f"the upstream answered {answer.content_type or 'no content type'} "
                "instead of an event stream",
                FailureReason.UPSTREAM_NOT_A_STREAM,
                self.host,
                route.route_template,
            )
        inner = decode_answer(_member_route(route, member.field), answer)
        return route.response_codec.cls(**{member.field: inner})

    def _cancel_upstream(
        self, state: _RelayState, caller: CallerMetadata, trace: CallTrace | None
    ) -> None:
        path = state.cancel_path()
        if path is None or not self.settings.cancel_upstream:
            return
        parent = trace.detached() if trace is not None else None
        task = asyncio.get_running_loop().create_task(
            self._post_cancel(path, state, caller, parent)
        )
        self._cancellations.add(task)
        task.add_done_callback(self._cancellations.discard)

    async def _post_cancel(
        self, path: str, state: _RelayState, caller: CallerMetadata, trace: CallTrace | None
    ) -> None:
        route = state.route
        request = UpstreamRequest(
            "POST",
            path,
            f"POST cancel of {route.template}",
            # A key of its own: the caller's would name the request that opened the stream,
            # and the upstream answers a key reused for another request with 422.
            self.headers.for_call("POST", True, replace(caller, idempotency_key=None)),
            body=b"{}",
        )
        try:
            await self.traffic.send(
                request,
                grpc_method=route.full_method,
                # The global bucket only: a cancel lightens the upstream's load, and each
                # follows an opening that the caller's bucket paid for.
                caller=None,
                deadline=self.traffic.deadline(self.settings.cancel_timeout),
                trace=trace,
            )
            log.info("cancelled an abandoned stream upstream", extra={"route": request.route})
        except GatewayError as exc:
            log.warning("could not cancel an abandoned stream upstream: %s", exc.message)

    async def close(self) -> None:
        """Let in-flight upstream cancellations finish (they are short and bounded)."""
        if self._cancellations:
            await asyncio.gather(*self._cancellations, return_exceptions=True)


class _RelayState:
    """What one relay has seen: counts, completion, variables for the cancel path."""

    def __init__(self, route: Route, spec: SseSpec, request: Message) -> None:
        self.route = route
        self.spec = spec
        self.request = request
        self.relayed = 0
        self.completed = False
        self.drained = False
        self.variables: dict[str, str] = {}
        self._cls = route.response_codec.cls

    def decode(self, event_type: str, data: str, event_id: str) -> Message | None:
        member = self.spec.members.get(event_type)
        if member is None:
            return None  # an event type this contract does not know: skipped
        try:
            parsed = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        if self.spec.cancel_path:
            self._remember(parsed)
        fields: dict[str, Any] = {member.field: member.codec.kwargs(parsed)}
        if self.spec.event_id_field and event_id:
            fields[self.spec.event_id_field] = event_id
        return self._cls(**fields)

    def _remember(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, str) and key not in self.variables:
                self.variables[key] = value

    def cancel_path(self) -> str | None:
        if not self.spec.cancel_path:
            return None
        fields = self.request.DESCRIPTOR.fields_by_name
        parts = []
        for segment in self.spec.cancel_path:
            if not (segment.startswith("{") and segment.endswith("}")):
                parts.append(segment)
                continue
            name = segment[1:-1]
            value = self.variables.get(name)
            if value is None and name in fields:
                value = str(getattr(self.request, name))
            if not value or segment_problem(value) is not None:
                return None  # the run id is not known (yet): nothing to cancel
            parts.append(quote(value, safe="-._~"))  # as a request's path variables are
        return "/" + "/".join(parts)


def _error_event(data: str, state: _RelayState, host: str) -> GatewayError:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = {}
    status = parsed.get("status") if isinstance(parsed, dict) else None
    answer = UpstreamAnswer(
        status=status if isinstance(status, int) and 400 <= status < 600 else 502,
        headers={},
        body=data.encode(),
        content_type="application/json",
        host=host,
    )
    error = UpstreamHTTPError(answer, state.route.route_template)
    error.context["stream_event"] = state.spec.error_event
    return error


def _member_route(route: Route, member: str) -> Route:
    """The route, answering into one oneof member (for plain-JSON answers)."""
    field = route.response_codec.descriptor.fields_by_name[member]
    assert field.message_type is not None
    codec = route.response_codec.registry.codec(field.message_type)
    return replace(route, response_codec=codec, response_field="", list_field="")


def _failure_of(error: GatewayError, state: _RelayState) -> Failure:
    """What a failed opening means for retrying: as for a unary call when the upstream
    surely did not start the run (nothing sent, a 429 or a 502-504 answer). Once the
    request may have started it — the connection lost, the stream cut before its first
    event — it is not opened again: the upstream would still be running the first with the
    same idempotency key (a conflict), or run it twice without one."""
    if state.relayed:
        return Failure(FailureKind.FINAL, stream_started=True)
    failure = classify_failure(error)
    if failure.kind is FailureKind.OUTCOME_UNKNOWN:
        return Failure(FailureKind.FINAL)
    return failure
