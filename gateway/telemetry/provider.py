"""A gateway's telemetry: the tracer provider (when tracing is on), metrics, access log.

:class:`Telemetry` is built from the frozen :class:`~gateway.telemetry.settings.TelemetryConfig`
and shared by both sides of a call: :mod:`gateway.telemetry.server` (one record per call)
and :mod:`gateway.telemetry.client` (one per upstream attempt). Tracing off (no exporter
configured) means no TracerProvider and no span objects at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Tracer, set_span_in_context

from gateway.call import CallTrace
from gateway.telemetry.export import build_exporters, build_propagator, build_resource
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.redaction import Redactor
from gateway.telemetry.sampling import HeadSampling, PresetTraceIds, build_sampler
from gateway.telemetry.settings import TelemetryConfig
from gateway.version import __version__

log = logging.getLogger("gateway.telemetry")


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

    def inject(self, headers: dict[str, str], ids: SpanContext, trace: CallTrace) -> None:
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
