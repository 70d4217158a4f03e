"""The stream client: long-lived answers (event streams) read as they arrive, on aiohttp.

:class:`StreamClient` owns the process's aiohttp ``ClientSession`` for streams, on a
connector of its own (``GATEWAY_STREAM_CONCURRENCY`` connections) so that open streams
cannot starve unary calls. It uses what aiohttp does well for streams: the stream reader,
per-read timeouts (the idle limit) and backpressure — a relay that stops reading lets
aiohttp's buffer fill and pause the socket. It does not follow redirects or take proxy
settings from the environment.

:meth:`StreamClient.open` yields an :class:`UpstreamStream` whose reads raise only the
gateway's errors. Leaving the block before the answer is complete closes the connection
rather than returning it to the pool. The attempt's duration metric is taken when the
headers arrive; its span lasts until the stream is closed.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import aiohttp

from gateway.call import CallTrace
from gateway.errors import FailureReason, UpstreamAnswer, UpstreamTransportError
from gateway.telemetry.client import ClientTelemetry
from gateway.telemetry.provider import Telemetry
from gateway.upstream.request import UpstreamRequest
from gateway.upstream.settings import DEFAULT_HEADERS, KEEPALIVE_SECONDS, Origin, UpstreamSettings
from gateway.upstream.translate import translating


class UpstreamStream:
    """An upstream answer being read: its status and headers now, its body as it comes."""

    __slots__ = ("_host", "_idle_timeout", "_max_body", "_response", "_route", "_timeout")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        host: str,
        route: str,
        timeout: float | None,
        idle_timeout: float,
        max_body: int,
    ) -> None:
        self._response = response
        self._host = host
        self._route = route
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._max_body = max_body

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def content_type(self) -> str:
        return self._response.content_type

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers, names in lower case."""
        return {k.lower(): v for k, v in self._response.headers.items()}

    def abort(self) -> None:
        """Close the connection under a reader (the gateway is draining): the read that is
        waiting, or the next one, fails as a lost connection."""
        self._response.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (silence past the idle limit: UpstreamTimeout)."""
        with translating(self._host, self._route, self._timeout, self._idle_timeout):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def read(self) -> UpstreamAnswer:
        """The whole answer (for answers that are not event streams), at most the pool's
        ``max_body_bytes`` once decompressed (more: UpstreamTransportError)."""
        response = self._response
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > self._max_body:
                raise UpstreamTransportError(
                    f"the upstream's answer exceeds the {self._max_body}-byte limit",
                    FailureReason.UPSTREAM_BODY_TOO_LARGE,
                    self._host,
                    self._route,
                )
            parts.append(chunk)
        body = b"".join(parts)
        return UpstreamAnswer(
            status=response.status,
            headers=self.headers,
            body=body,
            content_type=response.headers.get("Content-Type", ""),
            host=self._host,
        )


class StreamClient:
    """Opens event streams to the REST API; :meth:`start` and :meth:`close` own the session."""

    def __init__(
        self, settings: UpstreamSettings, telemetry: Telemetry, pool_name: str = "stream"
    ) -> None:
        self.settings = settings
        self.origin = Origin.of(settings.base_url)
        self.host = self.origin.host
        self.telemetry = ClientTelemetry(telemetry, self.host, self.origin.port, pool_name)
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None

    def connections_in_use(self) -> int:
        connector = self._connector
        # aiohttp keeps no public count of the connections its requests hold
        return len(connector._acquired) if connector is not None else 0

    async def start(self) -> None:
        if self._session is not None:
            return
        size = self.settings.pool_size
        connector = aiohttp.TCPConnector(
            limit=size,
            limit_per_host=size,
            ttl_dns_cache=300,
            keepalive_timeout=KEEPALIVE_SECONDS,
            family=socket.AF_UNSPEC,
            ssl=self.settings.ssl_context() or True,
        )
        self._connector = connector
        self._session = aiohttp.ClientSession(
            base_url=self.origin.url,
            connector=connector,
            trust_env=False,
            auto_decompress=True,
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
            headers=DEFAULT_HEADERS,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        self._connector = None
        if session is not None:
            await session.close()

    @contextlib.asynccontextmanager
    async def open(
        self,
        request: UpstreamRequest,
        timeout: float | None,
        idle_timeout: float,
        trace: CallTrace | None = None,
        attempt: int = 1,
    ) -> AsyncIterator[UpstreamStream]:
        """The answer to ``request``, open for reading until the block ends.

        ``timeout`` bounds the whole exchange (the caller's deadline, if any);
        ``idle_timeout`` bounds the silence between two reads; ``attempt`` counts the
        openings of one call (retries, in telemetry).
        """
        session, route = self._session, request.route
        if session is None:
            raise UpstreamTransportError(
                "the gateway is shutting down", FailureReason.GATEWAY_CLOSED, self.host, route
            )
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, connect=self.settings.connect_timeout, sock_read=idle_timeout
        )
        sent = dict(request.headers)
        record = self.telemetry.begin(trace, request.method, route, attempt, sent)
        failure: BaseException | None = None
        try:
            with translating(self.host, route, timeout, idle_timeout):
                response = await session.request(
                    request.method,
                    request.target(self.origin.base_path),
                    data=request.body,
                    headers=sent,
                    allow_redirects=False,
                    timeout=client_timeout,
                )
            record.answered(response.status)
            record.observe()
            try:
                yield UpstreamStream(
                    response, self.host, route, timeout, idle_timeout, self.settings.max_body_bytes
                )
            finally:
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            record.close(failure)
