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
  once and, when the run id is known, the run is cancelled upstream in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
from google.protobuf.message import Message

from gateway.errors import (
    GatewayError,
    UpstreamAnswer,
    UpstreamHTTPError,
    UpstreamTransportError,
)
from gateway.metadata import CallerMetadata
from gateway.metrics import Metrics
from gateway.routes import Route, SseSpec, segment_problem
from gateway.sse import Comment, EventTooLarge, SSEParser
from gateway.telemetry import TraceParent
from gateway.transcoder import Transcoder, decode_answer
from gateway.upstream import Upstream

log = logging.getLogger("gateway.streaming")

_EVENT_STREAM = "text/event-stream"
ADMISSION_WAIT_WITHOUT_DEADLINE = 60.0
"""Longest wait for the rate limits before opening a stream whose caller set no deadline."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    idle_timeout: float = 60.0
    cancel_upstream: bool = True
    cancel_timeout: float = 5.0
    max_event_bytes: int = 4 * 1024 * 1024


class SseRelay:
    """Relays SSE answers for routes with an :class:`SseSpec`."""

    def __init__(
        self,
        upstream: Upstream,
        transcoder: Transcoder,
        settings: StreamSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.upstream = upstream
        self.transcoder = transcoder
        self.settings = settings
        self._open = (metrics or Metrics()).sse_open
        self._cancellations: set[asyncio.Task[None]] = set()

    async def relay(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        time_remaining: float | None,
        trace: TraceParent | None = None,
    ) -> AsyncGenerator[Message, None]:
        """The call's messages; ``trace`` learns how many events were relayed."""
        spec = route.sse
        assert spec is not None
        http = route.build(request)
        headers = self.transcoder.headers(route, caller, http.body is not None)
        headers["Accept"] = f"{_EVENT_STREAM}, application/json;q=0.5"
        traffic = self.transcoder.traffic
        await traffic.admit(
            grpc_method=route.full_method,
            caller=caller.authorization,
            upstream_credential=headers.get("Authorization"),
            deadline=traffic.deadline(
                time_remaining if time_remaining is not None else ADMISSION_WAIT_WITHOUT_DEADLINE
            ),
        )
        state = _RelayState(route, spec, request)
        try:
            async with self.upstream.stream(
                http.method,
                http.path,
                route=route.route_template,
                body=http.body,
                headers=headers,
                timeout=time_remaining,
                idle_timeout=self.settings.idle_timeout,
                trace=trace,
            ) as response:
                if not 200 <= response.status < 300 or _EVENT_STREAM not in response.content_type:
                    yield await self._plain_answer(route, spec, response)
                    state.completed = True
                    return
                self._open.inc()
                try:
                    with self.upstream.translate_errors(
                        route.route_template, time_remaining, self.settings.idle_timeout
                    ):
                        async for message in self._events(response, state):
                            yield message
                finally:
                    self._open.dec()
                    if trace is not None:
                        trace.events = state.relayed
        except GatewayError as exc:
            exc.context["events_relayed"] = str(state.relayed)
            raise
        finally:
            if not state.completed:
                self._cancel_upstream(state, caller, trace)

    async def _events(
        self, response: aiohttp.ClientResponse, state: _RelayState
    ) -> AsyncIterator[Message]:
        parser = SSEParser(self.settings.max_event_bytes)
        spec = state.spec
        try:
            async for chunk in response.content.iter_any():
                for item in parser.feed(chunk):
                    if isinstance(item, Comment):
                        continue
                    if item.type == spec.error_event:
                        raise _error_event(item.data, state, self.upstream.host)
                    message = state.decode(item.type, item.data, item.id)
                    if message is None:
                        continue
                    state.relayed += 1
                    yield message
                    if item.type in spec.terminal_events:
                        state.completed = True
                        return
        except EventTooLarge as exc:
            raise UpstreamTransportError(
                f"an upstream event exceeds {exc.limit} bytes",
                "UPSTREAM_EVENT_TOO_LARGE",
                self.upstream.host,
                state.route.route_template,
            ) from exc
        cut = parser.finish()
        where = "in the middle of an event" if cut else "before the run completed"
        raise UpstreamTransportError(
            f"the upstream stream ended {where} after {state.relayed} events",
            "UPSTREAM_STREAM_CUT",
            self.upstream.host,
            state.route.route_template,
        )

    async def _plain_answer(
        self, route: Route, spec: SseSpec, response: aiohttp.ClientResponse
    ) -> Message:
        """A non-stream answer: an error, or one JSON body relayed as the json_event."""
        body = await response.read()
        answer = self.upstream.answer(response, body)
        if not 200 <= answer.status < 300:
            raise UpstreamHTTPError(answer, route.route_template)
        member = spec.members.get(spec.json_event)
        if member is None:
            raise UpstreamTransportError(
                f"the upstream answered {answer.content_type or 'no content type'} "
                "instead of an event stream",
                "UPSTREAM_NOT_A_STREAM",
                self.upstream.host,
                route.route_template,
            )
        inner = decode_answer(_member_route(route, member.field), answer)
        return route.response_codec.cls(**{member.field: inner})

    def _cancel_upstream(
        self, state: _RelayState, caller: CallerMetadata, trace: TraceParent | None
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
        self, path: str, state: _RelayState, caller: CallerMetadata, trace: TraceParent | None
    ) -> None:
        headers = self.transcoder.headers(state.route, caller, has_body=True)
        try:
            answer = await self.upstream.request(
                "POST",
                path,
                route=f"POST cancel of {state.route.template}",
                body=b"{}",
                headers=headers,
                timeout=self.settings.cancel_timeout,
                trace=trace,
            )
            log.info(
                "cancelled an abandoned stream upstream",
                extra={"route": state.route.route_template, "http_status": answer.status},
            )
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
            parts.append(value)
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
