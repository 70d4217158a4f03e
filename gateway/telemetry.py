"""Traces, per-call metrics and the access log: one record per call, one per upstream attempt.

Each annotated RPC gets an :class:`RpcTelemetry` when the server registers it, with its
span name, attributes, metric children and log fields computed once. A call is a
:class:`Call`: it extracts the caller's W3C ``traceparent``, ``tracestate`` and ``baggage``,
starts the SERVER span (``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``), and at the end records the duration histogram, closes the span
and writes one access-log line. Every upstream HTTP attempt is an :class:`Exchange`: a
CLIENT span named by the route *template*, the trace headers injected into the request,
and the upstream duration histogram.

Why not the contrib instrumentations. ``opentelemetry-instrumentation-grpc``'s aio server
interceptor and ``opentelemetry-instrumentation-aiohttp-client``'s ``create_trace_config``
were the first choice and were set aside:

* the interceptor wraps every method handler and servicer context (health and reflection
  too, unless filtered) and attaches the span as the *current* context, detaching it
  across the ``yield`` of a streaming handler — an async generator that grpc.aio may close
  from another context; here the span context is passed explicitly instead, so a call
  costs no interceptor layer and streams need no context juggling;
* the aiohttp trace config names spans by HTTP method only, takes its parent from the
  current context and injects through the global propagator, records the raw URL (ids
  included), reads ``OTEL_PYTHON_AIOHTTP_CLIENT_*`` from the environment deep in a call,
  and ends its span when the headers arrive — an event stream's span should last as long
  as the stream. The gateway's one upstream boundary (:mod:`gateway.upstream`) knows the
  route template, the attempt number and when the exchange really ends, so it opens the
  span there and injects the headers into the request it builds anyway;
* with tracing off, both still run per request; here nothing of the SDK runs at all.

Tracing off (no exporter configured) means: no TracerProvider, no span objects, and the
caller's trace headers are forwarded upstream unchanged so the upstream still joins the
caller's trace. Tracing on with a call the sampler drops: the call gets a span context
(ids only) by the sampler's own rule without entering the SDK (:class:`HeadSampling`, for
the ratio and always-off samplers), no client spans are created, and its context is
injected.
Client faults (INVALID_ARGUMENT, NOT_FOUND, …) leave the server span's status unset;
UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS mark it as an
error, as the gRPC semantic conventions say. Client spans follow the same line: an
upstream 4xx is the caller's fault passed through (it gets ``error.type`` but no error
status, unlike the HTTP conventions' default for CLIENT spans), a 5xx or no answer at all
is an error.

Nothing here reads a header value other than the three trace headers, and every message
that reaches a span or a log line passes through the configured :class:`Redactor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import threading
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any, Final

import grpc
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.config import OtlpConfig, TelemetryConfig
from gateway.errors import UpstreamTimeout
from gateway.metrics import CounterChild, HistogramChild, Metrics
from gateway.redaction import Redactor

log = logging.getLogger("gateway.telemetry")
access_log: Final = logging.getLogger("gateway.access")

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
_ROOT: Final = Context()


# --------------------------------------------------------------------------- tracing set-up


def build_sampler(config: TelemetryConfig) -> Sampler:
    ratio = TraceIdRatioBased(config.sampler_ratio)
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[config.sampler]


class PresetTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id drawn beforehand can be handed in.

    :class:`HeadSampling` draws a root call's trace id to take the sampler's decision
    itself; when the call is sampled, the SDK must give the span that very id, which it
    takes from its id generator (the SDK's documented extension point).
    """

    def __init__(self) -> None:
        self.pending: int | None = None

    def generate_trace_id(self) -> int:
        pending, self.pending = self.pending, None
        return pending if pending is not None else super().generate_trace_id()


_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_SAMPLED: Final = int(TraceFlags.SAMPLED)
_RANDOM: Final = int(TraceFlags.RANDOM_TRACE_ID)
_DEFAULT_STATE: Final = TraceState()


class HeadSampling:
    """The configured sampler's decision for calls it drops, taken without the SDK.

    Most calls are dropped at a low sampling ratio, and for them the SDK's ``start_span``
    (sampler objects, id generator, span context, non-recording span) was measured at
    about 30 µs of a ~270 µs call, cold-cache (docs/BENCHMARKS.md, commit bf435f1's row).
    The rules are the SDK sampler's own, applied to the same ids:

    * no valid ``traceparent``: a random trace id; ``traceidratio`` keeps it when its low
      64 bits are below the sampler's bound, ``always_off`` never;
    * a ``traceparent`` (the common ``00-…`` form) with ``parentbased_*``: the parent's
      sampled flag decides; with plain ``traceidratio`` the parent's trace id does.

    A call to keep, an unusual header, or another sampler go through ``start_span`` as
    before (a kept root with the pre-drawn trace id, see :class:`PresetTraceIds`). Only
    built for the W3C propagators, whose headers are the ones read here.
    """

    def __init__(self, name: str, ratio: float, ids: PresetTraceIds) -> None:
        self.parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        self.bound = TraceIdRatioBased.get_bound_for_rate(ratio) if root == "traceidratio" else 0
        self.ids = ids
        self.random = random.Random(int.from_bytes(os.urandom(16), "big"))

    @classmethod
    def for_sampler(cls, name: str, ratio: float, ids: PresetTraceIds) -> HeadSampling | None:
        """None for the samplers that keep every root (nothing to gain)."""
        if name.removeprefix("parentbased_") not in ("traceidratio", "always_off"):
            return None
        return cls(name, ratio, ids)

    def dropped(self, carrier: Mapping[str, str] | None) -> SpanContext | None:
        """The call's span context when the sampler drops it; None: ask the SDK."""
        header = carrier.get("traceparent") if carrier is not None else None
        if header is None:
            trace_id = 0
            while not trace_id:
                trace_id = self.random.getrandbits(128)
            if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound:
                self.ids.pending = trace_id
                return None
            return SpanContext(trace_id, self._span_id(), False, TraceFlags(_RANDOM))
        match = _TRACEPARENT.fullmatch(header)
        if match is None:
            return None
        trace_id, parent_id = int(match[1], 16), int(match[2], 16)
        if not trace_id or not parent_id:
            return None
        flags = int(match[3], 16)
        if self.parent_based:
            if flags & _SAMPLED:
                return None
        elif trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound:
            return None
        assert carrier is not None
        state = carrier.get("tracestate")
        return SpanContext(
            trace_id,
            self._span_id(),
            False,
            TraceFlags(flags & _RANDOM),
            TraceState.from_header([state]) if state else _DEFAULT_STATE,
        )

    def _span_id(self) -> int:
        span_id = 0
        while not span_id:
            span_id = self.random.getrandbits(64)
        return span_id


def build_propagator(names: Iterable[str]) -> TextMapPropagator:
    parts: list[TextMapPropagator] = []
    for name in names:
        if name == "tracecontext":
            parts.append(TraceContextTextMapPropagator())
        elif name == "baggage":
            parts.append(W3CBaggagePropagator())
    return CompositePropagator(parts)


def build_exporters(config: TelemetryConfig) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (or the injected one)."""
    if config.span_exporter is not None:
        return [config.span_exporter]
    exporters: list[SpanExporter] = []
    for name in config.traces_exporters:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter(service_name=config.service_name))
        elif name == "otlp":
            exporters.append(_otlp_exporter(config.otlp))
    return exporters


def _otlp_exporter(otlp: OtlpConfig) -> SpanExporter:
    headers = dict(otlp.headers)
    if otlp.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(
            endpoint=otlp.endpoint or "http://localhost:4318/v1/traces",
            headers=headers,
            timeout=otlp.timeout,
            compression=Compression(otlp.compression or "none"),
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter(
        endpoint=otlp.endpoint or "http://localhost:4317",
        insecure=otlp.insecure,
        headers=headers,
        timeout=otlp.timeout,
        compression=grpc.Compression.Gzip
        if otlp.compression == "gzip"
        else grpc.Compression.NoCompression,
    )


def build_resource(config: TelemetryConfig) -> Resource:
    """The resource from the configuration alone (``Resource.create`` would read the
    environment again)."""
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.version": __version__,
        **dict(config.resource_attributes),
        "service.name": config.service_name,
    }
    return Resource(attributes)


# --------------------------------------------------------------------------- the gateway's


class Telemetry:
    """A gateway's tracer provider (when tracing is on), metrics and access log.

    ``start`` builds the provider, ``close`` flushes and shuts it down (last, after the
    pools are closed); both are safe to call twice.
    """

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        redactor: Redactor | None = None,
        access_log: bool = True,
    ) -> None:
        self.config = config or TelemetryConfig()
        self.metrics = Metrics()
        self.redact = redactor or Redactor()
        self.access_log = access_log
        self.propagator = build_propagator(self.config.propagators)
        self._w3c = sorted(self.config.propagators) == ["baggage", "tracecontext"]
        self.tracer: Tracer | None = None
        self.head: HeadSampling | None = None
        self._provider: TracerProvider | None = None
        self._closed = False

    @property
    def tracing(self) -> bool:
        return self.tracer is not None

    def start(self) -> None:
        if self._provider is not None or self._closed or not self.config.tracing:
            return
        config = self.config
        sampler = build_sampler(config)
        ids = PresetTraceIds()
        provider = TracerProvider(
            sampler=sampler,
            resource=build_resource(config),
            shutdown_on_exit=False,
            id_generator=ids,
        )
        if self._w3c:
            self.head = HeadSampling.for_sampler(config.sampler, config.sampler_ratio, ids)
        for exporter in build_exporters(config):
            provider.add_span_processor(self._processor(exporter))
        self._provider = provider
        self.tracer = provider.get_tracer("gateway", __version__)
        log.info(
            "tracing on",
            extra={
                "exporters": ",".join(config.traces_exporters) or "injected",
                "sampler": config.sampler,
                "ratio": config.sampler_ratio,
            },
        )

    def _processor(self, exporter: SpanExporter) -> SpanProcessor:
        config = self.config
        return BatchSpanProcessor(
            exporter,
            max_queue_size=config.batch_queue_size,
            schedule_delay_millis=config.batch_delay * 1000,
            max_export_batch_size=config.batch_size,
            export_timeout_millis=config.batch_timeout * 1000,
        )

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export every finished span now (blocking: for tests, not for the event loop)."""
        if self._provider is None:
            return True
        return self._provider.force_flush(int(timeout * 1000))

    async def close(self) -> None:
        """Flush what is queued and stop the exporters; the provider is not used again.

        The flush runs in a daemon thread and is waited for at most the OTLP export timeout
        (``OTEL_EXPORTER_OTLP_TIMEOUT``): a collector that is down must not hold the
        gateway's shutdown past its budget, nor keep the process alive afterwards.
        """
        provider, self._provider = self._provider, None
        self.tracer = None
        self.head = None
        self._closed = True
        if provider is None:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def shutdown() -> None:
            try:
                provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                    loop.call_soon_threadsafe(settle)

        threading.Thread(target=shutdown, name="telemetry-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, self.config.otlp.timeout)
        except TimeoutError:
            log.warning(
                "spans not exported within %.3gs at shutdown; dropping them",
                self.config.otlp.timeout,
            )

    def inject(self, headers: dict[str, str], ids: SpanContext, trace: TraceParent) -> None:
        """Add the headers that make an upstream request a child of ``ids``.

        With the default W3C propagators the headers are written directly — the caller's
        baggage is passed on as it came — which costs a fraction of the propagator API;
        other ``OTEL_PROPAGATORS`` choices go through it.
        """
        if self._w3c:
            headers["traceparent"] = (
                f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
            )
            if ids.trace_state:
                headers["tracestate"] = ids.trace_state.to_header()
            baggage = trace.forward.get("baggage") if trace.forward else None
            if baggage:
                headers["baggage"] = baggage
        else:
            context = set_span_in_context(NonRecordingSpan(ids), trace.parent)
            self.propagator.inject(headers, context=context)

    # -- factories

    def rpc(self, full_method: str, server_streaming: bool) -> RpcTelemetry:
        return RpcTelemetry(self, full_method, server_streaming)

    def client(self, host: str, port: int | None, pool: str) -> ClientTelemetry:
        return ClientTelemetry(self, host, port, pool)


# --------------------------------------------------------------------------- trace parents


class TraceParent:
    """What the upstream requests made for one call (or one poller) need to join its trace.

    ``span_context`` is the gateway's own span (None with tracing off), ``context`` the OTel
    context holding it — set only when the span is recorded, since only then are child
    spans made — and ``parent`` what was extracted from the caller. ``forward`` holds the
    caller's trace headers: passed on unchanged with tracing off, and the source of the
    baggage with tracing on. ``attempts`` and ``upstream_status`` count what the upstream
    side did, for the access log; ``events`` is set by the SSE relay so the stream's client
    span can say how many events it carried.
    """

    __slots__ = (
        "attempts",
        "context",
        "events",
        "forward",
        "parent",
        "recording",
        "span_context",
        "upstream_status",
    )

    def __init__(self) -> None:
        self.span_context: SpanContext | None = None
        self.context: Context | None = None
        self.parent: Context = _ROOT
        self.recording = False
        self.forward: dict[str, str] | None = None
        self.attempts = 0
        self.upstream_status: int | None = None
        self.events = 0

    def detached(self) -> TraceParent:
        """A parent for work that outlives this call but belongs to its trace (pollers)."""
        copy = TraceParent()
        copy.span_context, copy.context, copy.parent = self.span_context, self.context, self.parent
        copy.recording, copy.forward = self.recording, self.forward
        return copy

    def annotate(self, key: str, value: str | bool | int | float) -> None:
        """Set an attribute on the gateway's own span, if there is one being recorded."""

    def event(self, name: str, attributes: Mapping[str, str | bool | int | float]) -> None:
        """Add an event (a limiter wait, a breaker decision) to the gateway's span, if any."""


class RpcTelemetry:
    """Everything about one RPC that does not change per call."""

    __slots__ = (
        "_durations",
        "attributes",
        "in_flight",
        "kind",
        "messages",
        "method",
        "name",
        "service",
        "streaming",
        "telemetry",
    )

    def __init__(self, telemetry: Telemetry, full_method: str, server_streaming: bool) -> None:
        self.telemetry = telemetry
        self.name = full_method.lstrip("/")
        self.service, self.method = self.name.rsplit("/", 1)
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

    def begin(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Call:
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
        call = Call(self)
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
        parent = telemetry.propagator.extract(carrier) if carrier else _ROOT
        span = tracer.start_span(
            self.name, context=parent, kind=SpanKind.SERVER, attributes=self.attributes
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


class Call(TraceParent):
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
            expired = time_remaining is not None and time_remaining <= 0
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
                access_log.log(level, "call", extra=self._entry(code, elapsed))

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
            "_clean": True,  # every field is ours or redacted: the formatter need not scan
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


# --------------------------------------------------------------------------- upstream side


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
        trace: TraceParent | None,
        method: str,
        route: str,
        attempt: int,
        headers: dict[str, str],
    ) -> Exchange:
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
        return Exchange(self, trace, route, span)

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


class Exchange:
    """One upstream HTTP attempt: its clock, its HTTP status, its span."""

    __slots__ = ("client", "http_status", "observed", "route", "span", "started", "trace")

    def __init__(
        self, client: ClientTelemetry, trace: TraceParent | None, route: str, span: Span | None
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
