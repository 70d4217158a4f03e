"""A unary call end to end: message → upstream request → traffic control → message.

Nothing here looks at descriptors: the :class:`~gateway.transcoding.routes.Route` carries
everything precompiled. Failures are raised as :mod:`gateway.errors` types and turned
into a status by the server's single boundary.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from gateway.call import CallerMetadata, CallTrace
from gateway.errors import InvalidRequest
from gateway.traffic.control import TrafficControl
from gateway.transcoding.decode import decode_answer
from gateway.transcoding.headers import UpstreamHeaders
from gateway.transcoding.routes import Route
from gateway.upstream.request import UpstreamRequest


class UnaryTranscoder:
    """Performs the unary calls of any compiled route."""

    def __init__(
        self,
        traffic: TrafficControl,
        headers: UpstreamHeaders,
        default_timeout: float,
        routes: Iterable[Route] = (),
    ) -> None:
        self.traffic = traffic
        self.headers = headers
        self.default_timeout = default_timeout
        self._reads = {
            r.template: r for r in routes if r.http_method == "GET" and not r.server_streaming
        }
        """The GET of each path template, to read a resource before a masked update."""

    async def call(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        time_remaining: float | None,
        trace: CallTrace | None = None,
        returned: list[tuple[str, str]] | None = None,
    ) -> Message:
        """The call's response; ``returned`` (when given) receives the answer's headers
        that GATEWAY_RETURN_HEADERS names."""
        traffic = self.traffic
        timeout = self.default_timeout if time_remaining is None else time_remaining
        deadline = traffic.deadline(timeout)
        update = route.update
        if update is not None and update.needs_current(request):
            current = await self._read(route, request, caller, deadline, trace)
            request = update.completed(request, current)
        headers = self.headers.for_call(route.http_method, route.has_body, caller)
        answer = await traffic.send(
            route.build(request, headers),
            grpc_method=route.full_method,
            caller=caller.caller,
            deadline=deadline,
            trace=trace,
        )
        response = decode_answer(route, answer, request)
        if returned is not None:
            returned.extend(self.headers.passthrough.returned_from(answer.headers))
        if update is not None:
            update.check_applied(request, response, answer.host, route.route_template)
        return response

    async def _read(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        deadline: float,
        trace: CallTrace | None,
    ) -> Message:
        """The resource an update changes, as it is now (the GET of the same path)."""
        read = self._reads.get(route.template)
        if read is None:
            raise InvalidRequest(
                f"{route.full_method}: a mask naming part of an object needs a GET of "
                f"{route.template} to read it first, and the contract has none"
            )
        headers = self.headers.for_call("GET", False, caller)
        path = route.build(request, headers).path
        answer = await self.traffic.send(
            UpstreamRequest("GET", path, read.route_template, headers),
            grpc_method=read.full_method,
            caller=caller.caller,
            deadline=deadline,
            trace=trace,
        )
        return decode_answer(read, answer)
