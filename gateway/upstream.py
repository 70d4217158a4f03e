"""The upstream client: the pooled connections of one upstream, for unary calls and streams.

:class:`Upstream` holds two kinds of pooled connections to the REST API's origin. Unary
exchanges go through :class:`~gateway.http_client.HttpPool`, a lean keep-alive HTTP/1.1
pool (the reasons and measurements are in gateway/http_client.py); long-lived answers
(:meth:`Upstream.stream`, for SSE) through the process's aiohttp ``ClientSession``, whose
stream reader, per-read timeouts and backpressure they use. Neither follows redirects or
takes proxy settings from the environment; every request is bounded by the caller's
deadline. This is the one place where the clients' and the socket's exceptions are caught
and turned into :mod:`gateway.errors` types. A cancelled call cancels its task, which
abandons the HTTP request and closes its connection.

It is also where each attempt is observed (:class:`~gateway.telemetry.Exchange`): a CLIENT
span named by the route template, the trace headers added to the request, and the
duration by route template and status. This is done here, explicitly, rather than with an
aiohttp ``TraceConfig``: a trace config's ``on_request_end`` fires when the headers arrive,
while the exchange ends when the body is read or the event stream closes; and the route
template, the attempt number and the call's trace are known here, not to aiohttp. With
tracing off no aiohttp tracing signal is sent at all.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from gateway import __version__, http_client
from gateway.errors import (
    InvalidRequest,
    UpstreamAnswer,
    UpstreamTimeout,
    UpstreamTransportError,
)
from gateway.http_client import HttpPool
from gateway.telemetry import ClientTelemetry, Telemetry, TraceParent

USER_AGENT: Final = f"gagiteck-gateway/{__version__}"
KEEPALIVE_SECONDS: Final = 30.0
"""How long an idle upstream connection is kept for reuse."""


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str
    pool_size: int = 64
    connect_timeout: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024


class Upstream:
    """Sends HTTP requests to the REST API; ``async with`` opens and closes the pool."""

    def __init__(
        self, settings: UpstreamSettings, telemetry: Telemetry | None = None, pool: str = "unary"
    ) -> None:
        self.settings = settings
        parts = urlsplit(settings.base_url)
        self.host = parts.hostname or ""
        self._base_path = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._scheme = parts.scheme
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self._pool: HttpPool | None = None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._port = port
        self.telemetry: ClientTelemetry = (telemetry or Telemetry()).client(self.host, port, pool)

    def connections_in_use(self) -> int:
        """Connections serving a request now: unary exchanges plus open streams."""
        pool, connector = self._pool, self._connector
        # aiohttp keeps no public count of the connections its requests hold
        streams = len(connector._acquired) if connector is not None else 0
        return (pool.in_use if pool is not None else 0) + streams

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    async def start(self) -> None:
        if self._session is not None:
            return
        self._pool = HttpPool(
            self._scheme,
            self.host,
            self._port,
            size=self.settings.pool_size,
            connect_timeout=self.settings.connect_timeout,
            max_body_bytes=self.settings.max_body_bytes,
            keepalive_timeout=KEEPALIVE_SECONDS,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        connector = aiohttp.TCPConnector(
            limit=self.settings.pool_size,
            limit_per_host=self.settings.pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=KEEPALIVE_SECONDS,
            family=socket.AF_UNSPEC,
        )
        self._connector = connector
        self._session = aiohttp.ClientSession(
            base_url=self._origin,
            connector=connector,
            trust_env=False,
            auto_decompress=True,
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        pool, self._pool = self._pool, None
        self._connector = None
        if pool is not None:
            await pool.close()
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _session_for(self, route: str) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamTransportError(
                "the gateway is shutting down", "GATEWAY_CLOSED", self.host, route
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        query: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
        timeout: float,
        trace: TraceParent | None = None,
        attempt: int = 1,
    ) -> UpstreamAnswer:
        """One HTTP exchange; raises UpstreamTransportError or UpstreamTimeout.

        ``trace`` is the call (or poller) the request belongs to; ``attempt`` counts from 1.
        """
        pool = self._pool
        if pool is None:
            raise UpstreamTransportError(
                "the gateway is shutting down", "GATEWAY_CLOSED", self.host, route
            )
        if timeout <= 0:
            raise UpstreamTimeout("the deadline had passed before the call", self.host, route)
        target = self._base_path + path
        if query:
            target += "?" + urlencode(query, quote_via=quote)
        sent = dict(headers)
        exchange = self.telemetry.begin(trace, method, route, attempt, sent)
        try:
            raw = await pool.request(method, target, sent, body, timeout)
        except (http_client.HttpClientError, OSError) as exc:
            error = self.translate(exc, route, timeout)
            exchange.close(error)
            raise error from exc
        except BaseException as exc:
            exchange.close(exc)
            raise
        exchange.answered(raw.status)
        answer = UpstreamAnswer(
            status=raw.status,
            headers=raw.headers,
            body=raw.body,
            content_type=raw.headers.get("content-type", ""),
            host=self.host,
        )
        exchange.close()
        return answer

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        route: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float | None,
        idle_timeout: float,
        trace: TraceParent | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long-lived answer, read incrementally by the caller.

        ``timeout`` bounds the whole exchange (the caller's deadline, if any);
        ``idle_timeout`` bounds the silence between two reads. Leaving the block before
        the answer is complete closes the connection rather than returning it to the pool.
        The duration metric is taken when the headers arrive; the span lasts until the
        stream is closed.
        """
        session = self._session_for(route)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, connect=self.settings.connect_timeout, sock_read=idle_timeout
        )
        sent = dict(headers)
        exchange = self.telemetry.begin(trace, method, route, 1, sent)
        failure: BaseException | None = None
        try:
            with self.translate_errors(route, timeout, idle_timeout):
                response = await session.request(
                    method,
                    self._base_path + path,
                    data=body,
                    headers=sent,
                    allow_redirects=False,
                    timeout=client_timeout,
                )
                exchange.answered(response.status)
                exchange.observe()
                try:
                    yield response
                finally:
                    if response.content.at_eof():
                        response.release()
                    else:
                        response.close()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            exchange.close(failure)

    def answer(self, response: aiohttp.ClientResponse, payload: bytes) -> UpstreamAnswer:
        return UpstreamAnswer(
            status=response.status,
            headers=_plain(response.headers),
            body=payload,
            content_type=response.headers.get("Content-Type", ""),
            host=self.host,
        )

    @contextlib.contextmanager
    def translate_errors(
        self, route: str, timeout: float | None, idle_timeout: float | None = None
    ) -> Iterator[None]:
        """Raise what :meth:`translate` makes of an exception the block raises."""
        try:
            yield
        except (http_client.HttpClientError, aiohttp.ClientError, OSError) as exc:
            raise self.translate(exc, route, timeout, idle_timeout) from exc

    def translate(
        self,
        exc: BaseException,
        route: str,
        timeout: float | None,
        idle_timeout: float | None = None,
    ) -> Exception:
        """The one place where the clients' and the socket's exceptions become ours.

        ``exc`` is an HttpClientError, an aiohttp.ClientError or an OSError (TimeoutError
        included); the result is to be raised from it.
        """
        if isinstance(exc, http_client.HttpClientError):
            return self._translated(exc, route)
        if isinstance(exc, aiohttp.ServerTimeoutError):
            if idle_timeout is not None and "read" in str(exc).lower():
                return UpstreamTimeout(
                    f"the upstream stream was silent for more than {idle_timeout:.3g}s",
                    self.host,
                    route,
                    reason="UPSTREAM_STREAM_IDLE",
                )
            return UpstreamTimeout(f"the upstream did not answer in time ({exc})", self.host, route)
        if isinstance(exc, TimeoutError):
            limit = f" ({timeout:.3g}s)" if timeout is not None else ""
            return UpstreamTimeout(
                f"the upstream did not answer within the deadline{limit}", self.host, route
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamTransportError(
                f"cannot connect to the upstream {self.host}: {exc.os_error.strerror or exc}",
                "UPSTREAM_UNREACHABLE",
                self.host,
                route,
            )
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return UpstreamTransportError(
                "the upstream closed the connection without answering",
                "UPSTREAM_CONNECTION_LOST",
                self.host,
                route,
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamTransportError(
                "the upstream's answer was cut off before its end (truncated body)",
                "UPSTREAM_BODY_TRUNCATED",
                self.host,
                route,
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            return UpstreamTransportError(
                f"the upstream sent a malformed HTTP answer: {exc.message}",
                "UPSTREAM_PROTOCOL_ERROR",
                self.host,
                route,
            )
        return UpstreamTransportError(
            f"the connection to the upstream failed: {type(exc).__name__}",
            "UPSTREAM_CONNECTION_LOST",
            self.host,
            route,
        )

    def _translated(self, exc: http_client.HttpClientError, route: str) -> Exception:
        if isinstance(exc, http_client.UnsafeRequest):
            return InvalidRequest(f"the request cannot be sent upstream: {exc.message}")
        reason = _REASONS.get(type(exc), "UPSTREAM_CONNECTION_LOST")
        message = exc.message
        if reason == "UPSTREAM_UNREACHABLE":
            message = f"cannot connect to the upstream {self.host}: {message}"
        return UpstreamTransportError(message, reason, self.host, route)


_REASONS: Final[Mapping[type[http_client.HttpClientError], str]] = {
    http_client.ConnectFailed: "UPSTREAM_UNREACHABLE",
    http_client.ConnectionLost: "UPSTREAM_CONNECTION_LOST",
    http_client.BodyTruncated: "UPSTREAM_BODY_TRUNCATED",
    http_client.ProtocolError: "UPSTREAM_PROTOCOL_ERROR",
    http_client.BodyTooLarge: "UPSTREAM_BODY_TOO_LARGE",
}


def _plain(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
