"""A unary call end to end: message → HTTP request → upstream → message.

Nothing here looks at descriptors: the :class:`~gateway.routes.Route` carries everything
precompiled. Failures are raised as :mod:`gateway.errors` types and turned into a status
by the server's single boundary.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import Message

from gateway.auth import CredentialPolicy
from gateway.errors import UpstreamAnswer, UpstreamHTTPError, UpstreamUnreadable
from gateway.metadata import CallerMetadata
from gateway.routes import Route
from gateway.telemetry import TraceParent
from gateway.upstream import Upstream

_JSON = "application/json"


class Transcoder:
    """Performs unary calls for any compiled route."""

    def __init__(
        self, upstream: Upstream, credentials: CredentialPolicy, default_timeout: float
    ) -> None:
        self.upstream = upstream
        self.credentials = credentials
        self.default_timeout = default_timeout

    def headers(self, route: Route, caller: CallerMetadata, has_body: bool) -> dict[str, str]:
        headers = {"X-Request-ID": caller.request_id}
        authorization = self.credentials.authorization(caller.authorization)
        if authorization:
            headers["Authorization"] = authorization
        if has_body:
            headers["Content-Type"] = _JSON
        if caller.idempotency_key and route.http_method == "POST":
            headers["Idempotency-Key"] = caller.idempotency_key
        return headers

    def timeout(self, time_remaining: float | None) -> float:
        return self.default_timeout if time_remaining is None else time_remaining

    async def unary(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        time_remaining: float | None,
        trace: TraceParent | None = None,
    ) -> Message:
        http = route.build(request)
        answer = await self.upstream.request(
            http.method,
            http.path,
            route=route.route_template,
            query=http.query,
            body=http.body,
            headers=self.headers(route, caller, http.body is not None),
            timeout=self.timeout(time_remaining),
            trace=trace,
        )
        return decode_answer(route, answer)


def decode_answer(route: Route, answer: UpstreamAnswer) -> Message:
    """The response message for a finished exchange, or the error it stands for."""
    if not 200 <= answer.status < 300:
        raise UpstreamHTTPError(answer, route.route_template)
    codec = route.response_codec
    if route.response_is_empty or not answer.body.strip():
        return codec.cls()
    try:
        parsed: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError as exc:
        what = _describe_unreadable(answer, exc)
        raise UpstreamUnreadable(what, answer, route.route_template) from exc
    if route.response_field:
        parsed = {route.response_field: parsed}
    elif isinstance(parsed, list) and route.list_field:
        parsed = {route.list_field: parsed}
    return codec.decode(parsed)


def _describe_unreadable(answer: UpstreamAnswer, exc: orjson.JSONDecodeError) -> str:
    kind = answer.content_type.split(";")[0].strip() or "no content type"
    size = len(answer.body)
    if "html" in kind or answer.body.lstrip()[:1] == b"<":
        return (
            f"the upstream answered HTTP {answer.status} with an HTML page ({size} bytes), not JSON"
        )
    if "json" in kind and exc.pos >= size - 1:
        return (
            f"the upstream answered HTTP {answer.status} with truncated JSON "
            f"({size} bytes, ends before the document does)"
        )
    return f"the upstream answered HTTP {answer.status} with {kind} ({size} bytes) that is not JSON"
