"""The one place where the clients' and the socket's exceptions become the gateway's.

Each failure of the unary pool (:mod:`gateway.upstream.wire`), of aiohttp (event
streams) or of the socket is looked up in :data:`_TRANSPORT`, an ordered table of
exception type → :class:`~gateway.errors.FailureReason` and message; the first type that
matches wins, so subclasses come before their bases. Timeouts become
:class:`~gateway.errors.UpstreamTimeout`, a request that cannot be sent safely an
:class:`~gateway.errors.InvalidRequest`, and anything else a lost connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

import aiohttp

from gateway.errors import FailureReason, InvalidRequest, UpstreamTimeout, UpstreamTransportError
from gateway.upstream import wire

TRANSLATED: Final = (wire.HttpClientError, aiohttp.ClientError, OSError)
"""What :func:`translate` expects (TimeoutError is an OSError)."""

_UNREACHABLE: Final = "cannot connect to the upstream {host}: {detail}"
_TRANSPORT: Final[tuple[tuple[type[BaseException], FailureReason, str], ...]] = (
    (wire.ConnectFailed, FailureReason.UPSTREAM_UNREACHABLE, _UNREACHABLE),
    (wire.ConnectionLost, FailureReason.UPSTREAM_CONNECTION_LOST, "{detail}"),
    (wire.BodyTruncated, FailureReason.UPSTREAM_BODY_TRUNCATED, "{detail}"),
    (wire.ProtocolError, FailureReason.UPSTREAM_PROTOCOL_ERROR, "{detail}"),
    (wire.BodyTooLarge, FailureReason.UPSTREAM_BODY_TOO_LARGE, "{detail}"),
    (wire.HttpClientError, FailureReason.UPSTREAM_CONNECTION_LOST, "{detail}"),
    (aiohttp.ClientConnectorError, FailureReason.UPSTREAM_UNREACHABLE, _UNREACHABLE),
    (
        aiohttp.ServerDisconnectedError,
        FailureReason.UPSTREAM_CONNECTION_LOST,
        "the upstream closed the connection without answering",
    ),
    (
        aiohttp.ClientPayloadError,
        FailureReason.UPSTREAM_BODY_TRUNCATED,
        "the upstream's answer was cut off before its end (truncated body)",
    ),
    (
        aiohttp.ClientResponseError,
        FailureReason.UPSTREAM_PROTOCOL_ERROR,
        "the upstream sent a malformed HTTP answer: {detail}",
    ),
)


def translate(
    exc: BaseException,
    host: str,
    route: str,
    timeout: float | None,
    idle_timeout: float | None = None,
) -> Exception:
    """The gateway's error for one of :data:`TRANSLATED`; raise it ``from exc``.

    ``timeout`` is the time the request had (for the message); ``idle_timeout``, for an
    event stream, the silence allowed between two reads.
    """
    if isinstance(exc, wire.UnsafeRequest):
        return InvalidRequest(f"the request cannot be sent upstream: {exc.message}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        if idle_timeout is not None and "read" in str(exc).lower():
            return UpstreamTimeout(
                f"the upstream stream was silent for more than {idle_timeout:.3g}s",
                host,
                route,
                reason=FailureReason.UPSTREAM_STREAM_IDLE,
            )
        return UpstreamTimeout(f"the upstream did not answer in time ({exc})", host, route)
    if isinstance(exc, TimeoutError):
        limit = f" ({timeout:.3g}s)" if timeout is not None else ""
        return UpstreamTimeout(
            f"the upstream did not answer within the deadline{limit}", host, route
        )
    for kind, reason, message in _TRANSPORT:
        if isinstance(exc, kind):
            text = message.format(host=host, detail=_detail(exc))
            return UpstreamTransportError(text, reason, host, route)
    return UpstreamTransportError(
        f"the connection to the upstream failed: {type(exc).__name__}",
        FailureReason.UPSTREAM_CONNECTION_LOST,
        host,
        route,
    )


@contextlib.contextmanager
def translating(
    host: str, route: str, timeout: float | None, idle_timeout: float | None = None
) -> Iterator[None]:
    """Raise what :func:`translate` makes of an exception the block raises."""
    try:
        yield
    except TRANSLATED as exc:
        raise translate(exc, host, route, timeout, idle_timeout) from exc


def _detail(exc: BaseException) -> str:
    if isinstance(exc, wire.HttpClientError):
        return exc.message
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.message
    return str(exc)
