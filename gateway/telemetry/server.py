"""The server side: one record per call — its span, its metrics, its access line.

Each annotated RPC gets an :class:`RpcTelemetry` when the server registers it, with its
span name, attributes, metric children and log fields computed once. A call is a
:class:`ServerCall` (the call's :class:`~gateway.call.CallTrace`, filled in): it extracts
the caller's W3C ``traceparent``, ``tracestate`` and ``baggage``, starts the SERVER span
(``rpc.system``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``), and at the
end records the duration histogram, closes the span and writes one access-log line.

A call the sampler drops gets a span context (ids only) by the sampler's own rule without
entering the SDK (:class:`~gateway.telemetry.sampling.HeadSampling`); no client spans are
made for it, and its context is injected upstream. Client faults (INVALID_ARGUMENT,
NOT_FOUND, …) leave the span's status unset; UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
INTERNAL, UNAVAILABLE and DATA_LOSS mark it as an error, as the gRPC semantic conventions
say. Nothing here reads a header value other than the three trace headers, and every
message that reaches a span or a log line passes through the configured redactor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any, Final

import grpc
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from gateway.call import ROOT_CONTEXT, CallTrace
from gateway.telemetry.collectors import CounterChild, HistogramChild
from gateway.telemetry.logs import direct_sink
from gateway.telemetry.provider import Telemetry

_ACCESS: Final = "gateway.access"
access_log: Final = logging.getLogger(_ACCESS)

DEADLINE_MARGIN: Final = 0.25
"""Seconds before the gateway's own deadline within which a cancelled call counts as
DEADLINE_EXCEEDED: the caller's deadline falls a little earlier than the gateway's (the
request's transit), and the caller cancels at its own."""

TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate", "baggage"})
_HEADER_LIMITS: Final = {"traceparent": 128, "tracestate": 512, "baggage": 8192}

SERVER_ERRORS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcTelemetry:
    """Everything about one RPC that does not change per call."""

    __slots__ = (
        "_durations",
        "attributes",
        "in_flight",
        "kind",
        "label",
        "messages",
        "method",
        "name",
        "service",
        "streaming",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        full_method: str,
        server_streaming: bool,
        labelled_as: str | None = None,
    ) -> None:
        """``labelled_as``: the method named in metric labels and span attributes instead
        of ``full_method`` (a method the caller made up must not make a series of its own;
        the access line still names it)."""
        self.telemetry = telemetry
        self.name = full_method.lstrip("/")
        self.label = (labelled_as or self.name).lstrip("/")
        self.service, self.method = self.label.rsplit("/", 1)
        self.streaming = server_streaming
        self.kind = "server_stream" if server_streaming else "unary"
        self.attributes: Mapping[str, str] = {
            "rpc.system": "grpc",
            "rpc.service": self.service,
            "rpc.method": self.method,
        }
        metrics = telemetry.metrics
        self.in_flight = metrics.rpcs_in_flight.labels(self.service, self.method)
        self.messages: CounterChild | None = (
            metrics.stream_messages.labels(self.service, self.method) if server_streaming else None
        )
        self._durations: dict[grpc.StatusCode, HistogramChild] = {}

    def duration(self, code: grpc.StatusCode) -> HistogramChild:
        child = self._durations.get(code)
        if child is None:
            child = self._durations[code] = self.telemetry.metrics.rpc_duration.labels(
                self.service, self.method, self.kind, code.name
            )
        return child

    def begin(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> ServerCall:
        """A call has arrived: start its clock, its span (when tracing), count it."""
        carrier: dict[str, str] | None = None
        for key, value in metadata or ():
            if (
                key in TRACE_HEADERS
                and isinstance(value, str)
                and len(value) <= _HEADER_LIMITS[key]
            ):
                if carrier is None:
                    carrier = {}
                carrier[key] = value
        call = ServerCall(self)
        call.forward = carrier
        telemetry = self.telemetry
        tracer = telemetry.tracer
        if tracer is None:
            return call
        head = telemetry.head
        if head is not None:
            dropped = head.dropped(carrier)
            if dropped is not None:
                call.span_context = dropped
                return call
        parent = telemetry.propagator.extract(carrier) if carrier else ROOT_CONTEXT
        span = tracer.start_span(
            self.label, context=parent, kind=SpanKind.SERVER, attributes=self.attributes
        )
        if head is not None:
            head.ids.pending = None  # used by now, or not meant for this span
        call.span = span
        call.parent = parent
        call.span_context = span.get_span_context()
        if span.is_recording():
            call.recording = True
            call.context = set_span_in_context(span, parent)
        return call


class ServerCall(CallTrace):
    """One RPC in progress: clock, span, status, what the upstream did."""

    __slots__ = (
        "code",
        "ended",
        "exception",
        "message",
        "messages",
        "request_id",
        "rpc",
        "span",
        "started",
    )

    def __init__(self, rpc: RpcTelemetry) -> None:
        super().__init__()
        self.rpc = rpc
        self.started = perf_counter()
        self.span: Span | None = None
        self.code: grpc.StatusCode | None = None
        self.message = ""
        self.exception: BaseException | None = None
        self.request_id = ""
        self.messages = 0
        self.ended = False
        rpc.in_flight.inc()

    def sent(self) -> None:
        """One message of a server stream went out."""
        self.messages += 1
        counter = self.rpc.messages
        if counter is not None:
            counter.inc()

    def annotate(self, key: str, value: str | bool | int | float) -> None:
        if self.recording and self.span is not None:
            self.span.set_attribute(key, value)

    def event(self, name: str, attributes: Mapping[str, str | bool | int | float]) -> None:
        if self.recording and self.span is not None:
            self.span.add_event(name, attributes)

    def failed(self, code: grpc.StatusCode, message: str, exception: BaseException) -> None:
        """The call ends with ``code`` (``message`` is already redacted)."""
        self.code = code
        self.message = message
        self.exception = exception

    def end(self, time_remaining: float | None) -> None:
        """The call is over: metrics, span, access log (once; later calls do nothing).

        A failing call is ended just before its status is sent, so whoever sees the status
        can already see the span and the metrics.
        """
        if self.ended:
            return
        self.ended = True
        code = self.code
        if code is None:  # the handler was cancelled: by the caller, or by its deadline
            expired = time_remaining is not None and time_remaining <= DEADLINE_MARGIN
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            self.code = code
        rpc = self.rpc
        elapsed = perf_counter() - self.started
        rpc.in_flight.dec()
        rpc.duration(code).observe(elapsed)
        span = self.span
        if span is not None and self.recording:
            self._finish_span(span, code)
        telemetry = rpc.telemetry
        if telemetry.access_log:
            level = logging.WARNING if code in SERVER_ERRORS else logging.INFO
            if access_log.isEnabledFor(level):
                fields = self._entry(code, elapsed)
                sink = direct_sink(access_log, level)
                if sink is not None:  # the line alone: a record would cost 4x as much
                    sink.write_clean(level, _ACCESS, "call", fields)
                    return
                fields["_clean"] = True  # every field is ours or redacted: no scan needed
                # a record made directly: Logger.log would also walk the stack for a
                # source line that no formatter here prints
                access_log.handle(
                    access_log.makeRecord(_ACCESS, level, "", 0, "call", (), None, extra=fields)
                )

    def _finish_span(self, span: Span, code: grpc.StatusCode) -> None:
        redact = self.rpc.telemetry.redact
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if self.request_id:
            span.set_attribute("gateway.request_id", redact(self.request_id))
        if self.attempts:
            span.set_attribute("gateway.upstream.attempts", self.attempts)
        if self.rpc.streaming:
            span.set_attribute("gateway.stream.messages", self.messages)
        if code in SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {self.message}"))
            if self.exception is not None and code is grpc.StatusCode.INTERNAL:
                span.add_event(
                    "exception",
                    {
                        "exception.type": type(self.exception).__name__,
                        "exception.message": redact(str(self.exception)),
                    },
                )
        span.end()

    def _entry(self, code: grpc.StatusCode, elapsed: float) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "method": self.rpc.name,
            "code": code.name,
            "duration_ms": round(elapsed * 1000, 3),
            "upstream_status": self.upstream_status,
            "attempts": self.attempts,
            "request_id": self.rpc.telemetry.redact(self.request_id),
        }
        if self.rpc.streaming:
            entry["messages"] = self.messages
        ids = self.span_context
        if ids is not None:
            entry["trace_id"] = format(ids.trace_id, "032x")
            entry["span_id"] = format(ids.span_id, "016x")
        elif self.forward is not None:
            parent = self.forward.get("traceparent", "")
            if len(parent) >= 55:
                entry["trace_id"] = parent[3:35]
        return entry
