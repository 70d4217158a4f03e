"""A unary call end to end: message → upstream request → traffic control → message.

Nothing here looks at descriptors: the :class:`~gateway.transcoding.routes.Route` carries
everything precompiled. Failures are raised as :mod:`gateway.errors` types and turned
into a status by the server's single boundary.
"""

from __future__ import annotations

from google.protobuf.message import Message

from gateway.call import CallerMetadata, CallTrace
from gateway.traffic.control import TrafficControl
from gateway.transcoding.decode import decode_answer
from gateway.transcoding.headers import UpstreamHeaders
from gateway.transcoding.routes import Route


class UnaryTranscoder:
    """Performs the unary calls of any compiled route."""

    def __init__(
        self, traffic: TrafficControl, headers: UpstreamHeaders, default_timeout: float
    ) -> None:
        self.traffic = traffic
        self.headers = headers
        self.default_timeout = default_timeout

    async def call(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        time_remaining: float | None,
        trace: CallTrace | None = None,
    ) -> Message:
        headers = self.headers.for_call(route.http_method, route.has_body, caller)
        upstream_request = route.build(request, headers)
        traffic = self.traffic
        timeout = self.default_timeout if time_remaining is None else time_remaining
        answer = await traffic.send(
            upstream_request,
            grpc_method=route.full_method,
            caller=caller.authorization,
            deadline=traffic.deadline(timeout),
            trace=trace,
        )
        return decode_answer(route, answer)
