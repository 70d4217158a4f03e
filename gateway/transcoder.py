"""A unary call end to end: message → HTTP request → upstream → message.

Nothing here looks at descriptors: the :class:`~gateway.routes.Route` carries everything
precompiled. Failures are raised as :mod:`gateway.errors` types and turned into a status
by the server's single boundary.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from google.protobuf.message import Message

from gateway.auth import CredentialPolicy
from gateway.errors import UpstreamAnswer, UpstreamHTTPError, UpstreamUnreadable
from gateway.metadata import CallerMetadata
from gateway.routes import Route
from gateway.telemetry import TraceParent
from gateway.traffic import TrafficControl, TrafficSettings
from gateway.upstream import Upstream

_JSON = "application/json"


class Transcoder:
    """Performs unary calls for any compiled route."""

    def __init__(
        self,
        upstream: Upstream,
        credentials: CredentialPolicy,
        default_timeout: float,
        traffic: TrafficControl | None = None,
        generate_idempotency_keys: bool = True,
    ) -> None:
        self.upstream = upstream
        self.credentials = credentials
        self.default_timeout = default_timeout
        self.traffic = traffic or TrafficControl(TrafficSettings(), upstream.host)
        self.generate_idempotency_keys = generate_idempotency_keys

    def headers(self, route: Route, caller: CallerMetadata, has_body: bool) -> dict[str, str]:
        """The upstream request's headers, built once per call and reused by its retries.

        Every POST carries an ``Idempotency-Key``: the caller's, or one made for this call
        (so that its retries cannot create twice). A PATCH carries the caller's, if any.
        """
        headers = {"X-Request-ID": caller.request_id}
        authorization = self.credentials.authorization(caller.authorization)
        if authorization:
            headers["Authorization"] = authorization
        if has_body:
            headers["Content-Type"] = _JSON
        key = caller.idempotency_key
        if key is None and route.http_method == "POST" and self.generate_idempotency_keys:
            key = uuid.uuid4().hex
        if key and route.http_method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = key
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
        headers = self.headers(route, caller, http.body is not None)
        traffic = self.traffic
        deadline = traffic.deadline(self.timeout(time_remaining))

        async def attempt(number: int) -> Message:
            async def send(timeout: float) -> UpstreamAnswer:
                return await self.upstream.request(
                    http.method,
                    http.path,
                    route=route.route_template,
                    query=http.query,
                    body=http.body,
                    headers=headers,
                    timeout=timeout,
                    trace=trace,
                    attempt=number,
                )

            return await traffic.exchange(
                send,
                lambda answer: decode_answer(route, answer),
                grpc_method=route.full_method,
                caller=caller.authorization,
                upstream_credential=headers.get("Authorization"),
                deadline=deadline,
                trace=trace,
            )

        return await traffic.call(
            attempt,
            method=http.method,
            keyed="Idempotency-Key" in headers,
            deadline=deadline,
        )


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
