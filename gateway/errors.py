"""Everything that can go wrong in a call, and the one place it becomes a gRPC status.

    GatewayError                      expected failures, answered with a precise status
     ├── InvalidRequest               the caller's message or metadata cannot be sent
     ├── UpstreamHTTPError            the upstream answered with a non-2xx status
     ├── UpstreamUnreadable           the upstream answered, but not with JSON we can read
     ├── UpstreamTransportError       no answer: refused, reset, closed mid-way
     ├── UpstreamTimeout              the caller's deadline ran out while waiting
     ├── UpstreamIgnored              the upstream answered an update without applying part of it
     └── Refused                      the gateway itself declines (limits, breaker, shutdown)

Anything else that escapes a handler is a bug: :func:`gateway.status.to_status` answers it
as INTERNAL with a fixed message and the caller never sees a traceback.

Every failure is named by a :class:`FailureReason` (the ErrorInfo reason), and the sets
below the enum say what each reason means for the rest of the gateway: whether the request
may have reached the upstream (retries) and whether the upstream answered (the breaker).
Upstream HTTP statuses map to codes as google.rpc.Code documents its HTTP mapping (the
table in DESIGN.md). Every status carries exactly one ErrorInfo (reason in UPPER_SNAKE_CASE,
domain = the upstream host, metadata with the HTTP status) and a RequestInfo with the
request id; BadRequest, RetryInfo and QuotaFailure are added where they apply.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from gateway.error_body import FieldViolation, parse_error_body


class FailureReason(enum.StrEnum):
    """The ErrorInfo reasons of failures the gateway names itself."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    """The caller's message or metadata cannot be turned into an upstream request."""
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    """A message — the caller's request, or one made of the upstream's answer — is larger
    than GATEWAY_MAX_MESSAGE_BYTES."""
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    """The caller called a method no service of the gateway has."""
    INTERNAL_GATEWAY_ERROR = "INTERNAL_GATEWAY_ERROR"
    """A bug: the request id finds it in the gateway's log."""
    GATEWAY_CLOSED = "GATEWAY_CLOSED"
    """The gateway is shutting down and sends nothing more."""
    GATEWAY_DRAINING = "GATEWAY_DRAINING"
    """The gateway is shutting down: a stream or watch was ended so that its caller can
    open it again on another replica at once."""
    GATEWAY_RATE_LIMITED = "GATEWAY_RATE_LIMITED"
    """A token bucket's wait would outlast the call's deadline."""
    GATEWAY_STREAM_LIMIT = "GATEWAY_STREAM_LIMIT"
    """The caller already holds as many open streams and watches as a caller may."""
    GATEWAY_OVERLOADED = "GATEWAY_OVERLOADED"
    """Every upstream slot is taken and the queue for them is full."""
    GATEWAY_QUEUE_TIMEOUT = "GATEWAY_QUEUE_TIMEOUT"
    """The deadline passed while the call waited for an upstream slot."""
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    """The upstream is failing and the breaker stopped sending to it."""
    UPSTREAM_QUOTA_SPENT = "UPSTREAM_QUOTA_SPENT"
    """The upstream's own rate-limit window is spent until after the deadline."""
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    """A request that is not safe to repeat was sent, then the connection was lost."""
    UPSTREAM_UNREACHABLE = "UPSTREAM_UNREACHABLE"
    """No connection could be made: nothing was sent."""
    UPSTREAM_CONNECTION_LOST = "UPSTREAM_CONNECTION_LOST"
    """The connection closed or failed before the answer was complete."""
    UPSTREAM_BODY_TRUNCATED = "UPSTREAM_BODY_TRUNCATED"
    """The answer's body was cut off before its end."""
    UPSTREAM_PROTOCOL_ERROR = "UPSTREAM_PROTOCOL_ERROR"
    """The bytes that arrived are not a valid HTTP answer."""
    UPSTREAM_BODY_TOO_LARGE = "UPSTREAM_BODY_TOO_LARGE"
    """The answer is larger than the gateway reads."""
    UPSTREAM_BODY_UNREADABLE = "UPSTREAM_BODY_UNREADABLE"
    """A 2xx answer whose body is not the JSON the method expects."""
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    """The caller's deadline passed before the upstream answered."""
    UPSTREAM_STREAM_IDLE = "UPSTREAM_STREAM_IDLE"
    """An event stream stayed silent for longer than the idle limit."""
    UPSTREAM_STREAM_CUT = "UPSTREAM_STREAM_CUT"
    """An event stream ended before its terminal event."""
    UPSTREAM_EVENT_TOO_LARGE = "UPSTREAM_EVENT_TOO_LARGE"
    """One event of a stream is larger than a message may be."""
    UPSTREAM_NOT_A_STREAM = "UPSTREAM_NOT_A_STREAM"
    """A streaming route answered something other than an event stream."""
    UPSTREAM_IGNORED_FIELD = "UPSTREAM_IGNORED_FIELD"
    """The upstream accepted an update but did not change a field it named."""


NOT_SENT: Final = frozenset({FailureReason.UPSTREAM_UNREACHABLE})
"""Transport failures raised before any byte of the request left: safe to send again."""
OUTCOME_UNCERTAIN: Final = frozenset(
    {
        FailureReason.UPSTREAM_CONNECTION_LOST,
        FailureReason.UPSTREAM_BODY_TRUNCATED,
        FailureReason.UPSTREAM_PROTOCOL_ERROR,
    }
)
"""Transport failures after the request may have reached the upstream, with no usable
answer: repeated only when the request is safe to repeat."""
ANSWERED: Final = frozenset({FailureReason.UPSTREAM_BODY_TOO_LARGE})
"""Transport failures in which the upstream did answer (it is up, whatever the gateway
made of its answer)."""

RETRYABLE_STATUSES: Final = frozenset({502, 503, 504})
"""HTTP statuses that say the upstream could not handle the request: the breaker counts
them as failures, and requests that are safe to repeat are retried after them."""

GATEWAY_DOMAIN: Final = "gateway.gagiteck.v1"
"""ErrorInfo domain for failures decided by the gateway rather than the upstream."""

_HTTP_TO_CODE: Final[Mapping[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.OUT_OF_RANGE,
    416: grpc.StatusCode.OUT_OF_RANGE,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

_REASON_BY_HTTP: Final[Mapping[int, str]] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "VALIDATION_FAILED",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}

_SNAKE = re.compile(r"[^A-Z0-9]+")


def http_to_code(status: int, conflict_exists: bool = False) -> grpc.StatusCode:
    """The gRPC code for an upstream HTTP status (409 depends on what the conflict is)."""
    if status == 409:
        return grpc.StatusCode.ALREADY_EXISTS if conflict_exists else grpc.StatusCode.ABORTED
    found = _HTTP_TO_CODE.get(status)
    if found is not None:
        return found
    if 300 <= status < 400:
        return grpc.StatusCode.INTERNAL
    if 400 <= status < 500:
        return grpc.StatusCode.FAILED_PRECONDITION
    if 500 <= status < 600:
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.UNKNOWN if status < 0 else grpc.StatusCode.INTERNAL


def upper_snake(text: str) -> str:
    return _SNAKE.sub("_", text.upper()).strip("_")


class GatewayError(Exception):
    """Base of the expected failures; each knows its gRPC code and details."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    domain: str = GATEWAY_DOMAIN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, str] = {}
        """Extra ErrorInfo metadata added where the error is caught (e.g. events relayed)."""

    def error_metadata(self) -> dict[str, str]:
        return {}

    def extra_details(self) -> list[Any]:
        return []


class InvalidRequest(GatewayError):
    """The request cannot be turned into an upstream call; nothing was sent."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = FailureReason.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = list(violations)

    def extra_details(self) -> list[Any]:
        if not self.violations:
            return []
        return [_bad_request(self.violations)]


@dataclass
class UpstreamAnswer:
    """The parts of an upstream answer that error mapping reads."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str = ""
    host: str = ""


class UpstreamHTTPError(GatewayError):
    """The upstream answered with a status outside 2xx.

    ``retry_after`` is the wait the answer asked for (read from its headers by the
    upstream window, :mod:`gateway.traffic.window`), or None.
    """

    def __init__(
        self, answer: UpstreamAnswer, route: str, retry_after: float | None = None
    ) -> None:
        self.answer = answer
        self.route = route
        self.retry_after = retry_after
        body = parse_error_body(answer.body, answer.content_type)
        self.detail, self.upstream_code, self.violations = body.detail, body.code, body.violations
        self.code = http_to_code(answer.status, answer.status == 409 and body.says_exists)
        self.reason = upper_snake(self.upstream_code) or _REASON_BY_HTTP.get(
            answer.status, f"HTTP_{answer.status}"
        )
        self.domain = answer.host or GATEWAY_DOMAIN
        message = self.detail or f"upstream answered HTTP {answer.status}"
        super().__init__(message)
        self.message = message

    def error_metadata(self) -> dict[str, str]:
        meta = {"http_status": str(self.answer.status), "route": self.route}
        if self.upstream_code:
            meta["upstream_code"] = self.upstream_code
        return meta

    def extra_details(self) -> list[Any]:
        details: list[Any] = []
        if self.violations:
            details.append(_bad_request(self.violations))
        status = self.answer.status
        if self.retry_after is not None and (status == 429 or status >= 500):
            details.append(error_details_pb2.RetryInfo(retry_delay=_duration(self.retry_after)))
        if status == 429:
            details.append(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject="upstream:credential",
                            description=self.detail or "the upstream rate limit is spent",
                        )
                    ]
                )
            )
        return details


class UpstreamUnreadable(GatewayError):
    """A 2xx answer whose body is not the JSON the method expects."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = FailureReason.UPSTREAM_BODY_UNREADABLE

    def __init__(self, what: str, answer: UpstreamAnswer, route: str) -> None:
        super().__init__(what)
        self.answer = answer
        self.route = route
        self.domain = answer.host or GATEWAY_DOMAIN

    def error_metadata(self) -> dict[str, str]:
        return {
            "http_status": str(self.answer.status),
            "content_type": self.answer.content_type or "none",
            "body_bytes": str(len(self.answer.body)),
            "route": self.route,
        }


class _NoAnswer(GatewayError):
    """A failure on the way to or from the upstream, named by a reason and its route."""

    def __init__(self, message: str, reason: FailureReason, host: str, route: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.domain = host or GATEWAY_DOMAIN
        self.route = route

    def error_metadata(self) -> dict[str, str]:
        return {"route": self.route}


class UpstreamTransportError(_NoAnswer):
    """No usable answer: the connection was refused, reset or closed."""

    code = grpc.StatusCode.UNAVAILABLE


class UpstreamTimeout(_NoAnswer):
    """The caller's deadline passed before the upstream answered (or a stream idled)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED

    def __init__(
        self,
        message: str,
        host: str,
        route: str,
        reason: FailureReason = FailureReason.UPSTREAM_TIMEOUT,
    ) -> None:
        super().__init__(message, reason, host, route)


class UpstreamIgnored(GatewayError):
    """An update the upstream answered with success, but without the change of ``field``
    (the deployed service ignores what its update schema lacks)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = FailureReason.UPSTREAM_IGNORED_FIELD

    def __init__(self, field: str, host: str, route: str) -> None:
        super().__init__(
            f"the upstream did not apply {field}: it answered the update with {field} "
            "unchanged (it does not accept that field on update); the rest of the update "
            "was applied"
        )
        self.field = field
        self.domain = host or GATEWAY_DOMAIN
        self.route = route

    def error_metadata(self) -> dict[str, str]:
        return {"field": self.field, "route": self.route}


class Refused(GatewayError):
    """The gateway declines the call itself (shutting down, over a limit, breaker open)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode,
        reason: FailureReason,
        retry_after: float | None = None,
        quota_subject: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after
        self.quota_subject = quota_subject
        self._metadata = dict(metadata or {})

    def error_metadata(self) -> dict[str, str]:
        return self._metadata

    def extra_details(self) -> list[Any]:
        details: list[Any] = []
        if self.retry_after is not None:
            details.append(error_details_pb2.RetryInfo(retry_delay=_duration(self.retry_after)))
        if self.quota_subject is not None:
            details.append(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=self.quota_subject, description=self.message
                        )
                    ]
                )
            )
        return details


# --------------------------------------------------------------------------- the boundary


# --------------------------------------------------------------------------- helpers


def _bad_request(violations: Sequence[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    seconds = max(seconds, 0.0)  # callers pass finite, capped delays (traffic.window)
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def draining(what: str) -> Refused:
    """UNAVAILABLE for a stream or watch the gateway ends because it is shutting down;
    RetryInfo of zero: the caller may open it again at once (on another replica)."""
    return Refused(
        f"the gateway is shutting down and ended this {what}: open it again",
        grpc.StatusCode.UNAVAILABLE,
        FailureReason.GATEWAY_DRAINING,
        retry_after=0.0,
    )
