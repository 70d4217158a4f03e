"""The unary client: one request, one whole answer, over the keep-alive HTTP/1.1 pool.

:class:`UnaryClient` owns one :class:`~gateway.upstream.pool.HttpPool` to the REST API's
origin. It never follows redirects or reads proxy settings; every request is bounded by
the time it is given (the caller's deadline). Each request is one attempt for telemetry
(:class:`~gateway.telemetry.client.UpstreamAttempt`): a CLIENT span named by the route
template, the trace headers added to a copy of the request's headers, the duration by
route template and status. A cancelled call cancels its task, which abandons the request
and closes its connection. Failures leave as :mod:`gateway.errors` types.
"""

from __future__ import annotations

from gateway.call import CallTrace
from gateway.errors import FailureReason, UpstreamAnswer, UpstreamTimeout, UpstreamTransportError
from gateway.telemetry.client import ClientTelemetry
from gateway.telemetry.provider import Telemetry
from gateway.upstream.pool import HttpPool
from gateway.upstream.request import UpstreamRequest
from gateway.upstream.settings import DEFAULT_HEADERS, KEEPALIVE_SECONDS, Origin, UpstreamSettings
from gateway.upstream.translate import TRANSLATED, translate


class UnaryClient:
    """Sends unary requests to the REST API; :meth:`start` opens the pool, :meth:`close`
    ends it (both safe to call twice)."""

    def __init__(
        self, settings: UpstreamSettings, telemetry: Telemetry, pool_name: str = "unary"
    ) -> None:
        self.settings = settings
        self.origin = Origin.of(settings.base_url)
        self.host = self.origin.host
        self.telemetry: ClientTelemetry = ClientTelemetry(
            telemetry, self.host, self.origin.port, pool_name
        )
        self._pool: HttpPool | None = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def connections_in_use(self) -> int:
        return self._pool.in_use if self._pool is not None else 0

    async def start(self) -> None:
        if self._pool is not None:
            return
        settings, origin = self.settings, self.origin
        self._pool = HttpPool(
            origin.scheme,
            origin.host,
            origin.port,
            size=settings.pool_size,
            connect_timeout=settings.connect_timeout,
            max_body_bytes=settings.max_body_bytes,
            keepalive_timeout=KEEPALIVE_SECONDS,
            headers=DEFAULT_HEADERS,
            ssl_context=settings.ssl_context(),
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def send(
        self,
        request: UpstreamRequest,
        timeout: float,
        trace: CallTrace | None = None,
        attempt: int = 1,
    ) -> UpstreamAnswer:
        """One HTTP exchange within ``timeout`` seconds (whatever its status).

        Raises UpstreamTransportError, UpstreamTimeout or InvalidRequest. ``trace`` is the
        call (or poller) the request belongs to; ``attempt`` counts from 1.
        """
        pool, route = self._pool, request.route
        if pool is None:
            raise UpstreamTransportError(
                "the gateway is shutting down", FailureReason.GATEWAY_CLOSED, self.host, route
            )
        if timeout <= 0:
            raise UpstreamTimeout("the deadline had passed before the call", self.host, route)
        target = request.target(self.origin.base_path)
        sent = dict(request.headers)
        record = self.telemetry.begin(trace, request.method, route, attempt, sent)
        try:
            raw = await pool.request(request.method, target, sent, request.body, timeout)
        except TRANSLATED as exc:
            error = translate(exc, self.host, route, timeout)
            record.close(error)
            raise error from exc
        except BaseException as exc:
            record.close(exc)
            raise
        record.answered(raw.status)
        answer = UpstreamAnswer(
            status=raw.status,
            headers=raw.headers,
            body=raw.body,
            content_type=raw.headers.get("content-type", ""),
            host=self.host,
        )
        record.close()
        return answer
