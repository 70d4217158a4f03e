"""The client side: one record per upstream HTTP attempt — its span, headers, duration.

Every attempt is an :class:`UpstreamAttempt`: a CLIENT span named by the route *template*
(ids never appear in it), the trace headers injected into the request, and the upstream
duration histogram. An upstream 4xx is the caller's fault passed through (the span gets
``error.type`` but no error status, unlike the HTTP conventions' default for CLIENT
spans); a 5xx or no answer at all is an error. The upstream clients open and close the
attempt themselves (why not aiohttp's trace config: docs/decisions/005-own-instrumentation.md).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Final

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.call import CallTrace
from gateway.errors import UpstreamTimeout
from gateway.telemetry.provider import Telemetry


class ClientTelemetry:
    """Spans, header injection and metrics for one upstream pool's requests."""

    __slots__ = ("_attributes", "host", "pool", "port", "telemetry")

    def __init__(self, telemetry: Telemetry, host: str, port: int | None, pool: str) -> None:
        self.telemetry = telemetry
        self.host = host
        self.port = port
        self.pool = pool
        self._attributes: dict[tuple[str, str], dict[str, str | int]] = {}

    def begin(
        self,
        trace: CallTrace | None,
        method: str,
        route: str,
        attempt: int,
        headers: dict[str, str],
    ) -> UpstreamAttempt:
        """An attempt starts: add the trace headers to ``headers``, open its span."""
        metrics = self.telemetry.metrics
        if attempt > 1:
            metrics.retries(route).inc()
        span: Span | None = None
        if trace is not None:
            trace.attempts += 1
            ids = trace.span_context
            if ids is None:  # tracing off: the caller's headers, unchanged
                if trace.forward:
                    headers.update(trace.forward)
            else:
                tracer = self.telemetry.tracer
                if trace.recording and tracer is not None:
                    span = tracer.start_span(
                        route,
                        context=trace.context,
                        kind=SpanKind.CLIENT,
                        attributes=self._attributes_for(method, route),
                    )
                    span.set_attribute("gateway.upstream.attempt", attempt)
                    if attempt > 1:
                        span.set_attribute("http.request.resend_count", attempt - 1)
                    ids = span.get_span_context()
                self.telemetry.inject(headers, ids, trace)
        return UpstreamAttempt(self, trace, route, span)

    def _attributes_for(self, method: str, route: str) -> dict[str, str | int]:
        key = (method, route)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {
                "http.request.method": method,
                "url.template": route.partition(" ")[2] or route,
                "server.address": self.host,
            }
            if self.port is not None:
                attributes["server.port"] = self.port
            self._attributes[key] = attributes
        return attributes


class UpstreamAttempt:
    """One upstream HTTP attempt: its clock, its HTTP status, its span."""

    __slots__ = ("client", "http_status", "observed", "route", "span", "started", "trace")

    def __init__(
        self, client: ClientTelemetry, trace: CallTrace | None, route: str, span: Span | None
    ) -> None:
        self.client = client
        self.trace = trace
        self.route = route
        self.span = span
        self.http_status: int | None = None
        self.observed = False
        self.started = perf_counter()

    def answered(self, status: int) -> None:
        self.http_status = status
        if self.trace is not None:
            self.trace.upstream_status = status

    def observe(self, error: BaseException | None = None) -> None:
        """Record the duration so far, once: at the end, or at the headers of a stream.

        The status label is the HTTP status, or ``error``, ``timeout`` or ``cancelled``
        when the exchange failed before its answer was complete.
        """
        if self.observed:
            return
        self.observed = True
        label: int | str
        if error is not None:
            label = _outcome(error)
        elif self.http_status is not None:
            label = self.http_status
        else:
            label = "error"
        elapsed = perf_counter() - self.started
        self.client.telemetry.metrics.upstream(self.route, label).observe(elapsed)

    def close(self, error: BaseException | None = None) -> None:
        """The exchange is over (the body read, or the stream closed)."""
        self.observe(error)
        span = self.span
        if span is None:
            return
        status = self.http_status
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if self.trace is not None and self.trace.events:
            span.set_attribute("gateway.stream.events", self.trace.events)
        if error is not None:
            reason = getattr(error, "reason", None) or type(error).__name__
            span.set_attribute("error.type", str(reason))
            if not isinstance(error, _ABANDONED):
                message = getattr(error, "message", None) or type(error).__name__
                span.set_status(Status(StatusCode.ERROR, self.client.telemetry.redact(message)))
        elif status is not None and status >= 400:
            span.set_attribute("error.type", str(status))
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()


_ABANDONED: Final = (asyncio.CancelledError, GeneratorExit)


def _outcome(error: BaseException) -> str:
    if isinstance(error, _ABANDONED):
        return "cancelled"
    if isinstance(error, TimeoutError | UpstreamTimeout):
        return "timeout"
    return "error"
