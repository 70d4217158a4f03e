"""Everything that can go wrong in a call, and the one place it becomes a gRPC status.

    GatewayError                      expected failures, answered with a precise status
     ├── InvalidRequest               the caller's message or metadata cannot be sent
     ├── UpstreamHTTPError            the upstream answered with a non-2xx status
     ├── UpstreamUnreadable           the upstream answered, but not with JSON we can read
     ├── UpstreamTransportError       no answer: refused, reset, closed mid-way
     ├── UpstreamTimeout              the caller's deadline ran out while waiting
     └── Refused                      the gateway itself declines (limits, breaker, shutdown)

Anything else that escapes a handler is a bug: :func:`to_status` answers it as INTERNAL
with a fixed message and the caller never sees a traceback.

Upstream HTTP statuses map to codes as google.rpc.Code documents its HTTP mapping (the
table in DESIGN.md). Every status carries exactly one ErrorInfo (reason in UPPER_SNAKE_CASE,
domain = the upstream host, metadata with the HTTP status) and a RequestInfo with the
request id; BadRequest, RetryInfo and QuotaFailure are added where they apply.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import orjson
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

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


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


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
    reason = "INVALID_ARGUMENT"

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
    """The upstream answered with a status outside 2xx."""

    def __init__(self, answer: UpstreamAnswer, route: str) -> None:
        self.answer = answer
        self.route = route
        parsed = _parse_error_body(answer.body, answer.content_type)
        self.detail, self.upstream_code, self.violations = parsed
        conflict_exists = answer.status == 409 and _says_exists(self.upstream_code, self.detail)
        self.code = http_to_code(answer.status, conflict_exists)
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
        delay = retry_delay(self.answer.headers)
        if delay is not None and (self.answer.status in (429, 503) or self.answer.status >= 500):
            details.append(error_details_pb2.RetryInfo(retry_delay=_duration(delay)))
        if self.answer.status == 429:
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
    reason = "UPSTREAM_BODY_UNREADABLE"

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

    def __init__(self, message: str, reason: str, host: str, route: str) -> None:
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
        self, message: str, host: str, route: str, reason: str = "UPSTREAM_TIMEOUT"
    ) -> None:
        super().__init__(message, reason, host, route)


class Refused(GatewayError):
    """The gateway declines the call itself (shutting down, over a limit, breaker open)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode,
        reason: str,
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


@dataclass(frozen=True, slots=True)
class CallStatus:
    """A finished call's status, ready for ``context.abort``."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = field(default=())


def to_status(error: BaseException, request_id: str) -> CallStatus:
    """The single translation of any failure into the status the caller receives."""
    if isinstance(error, GatewayError):
        code, message = error.code, error.message
        info = error_details_pb2.ErrorInfo(
            reason=error.reason,
            domain=error.domain,
            metadata={**error.error_metadata(), **error.context},
        )
        details = [info, *error.extra_details()]
    else:
        code = grpc.StatusCode.INTERNAL
        message = "internal gateway error; the request id identifies it in the gateway's logs"
        info = error_details_pb2.ErrorInfo(reason="INTERNAL_GATEWAY_ERROR", domain=GATEWAY_DOMAIN)
        details = [info]
    details.append(error_details_pb2.RequestInfo(request_id=request_id))
    status = status_pb2.Status(code=_CODE_NUMBER[code], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return CallStatus(
        code=code,
        message=message,
        trailing_metadata=(
            ("grpc-status-details-bin", status.SerializeToString()),
            ("x-request-id", request_id),
        ),
    )


_CODE_NUMBER: Final[Mapping[grpc.StatusCode, int]] = {
    c: getattr(code_pb2, c.name) for c in grpc.StatusCode
}


# --------------------------------------------------------------------------- helpers


def _bad_request(violations: Sequence[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    seconds = max(seconds, 0.0)
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def retry_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset``."""
    now = time.time() if now is None else now
    after = headers.get("Retry-After") or headers.get("retry-after")
    if after:
        after = after.strip()
        try:
            return max(float(after), 0.0)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(after)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                return max(when.timestamp() - now, 0.0)
    reset = headers.get("X-RateLimit-Reset") or headers.get("x-ratelimit-reset")
    remaining = headers.get("X-RateLimit-Remaining") or headers.get("x-ratelimit-remaining")
    if reset and (remaining is None or remaining.strip() == "0"):
        try:
            value = float(reset)
        except ValueError:
            return None
        # A small number is a delay in seconds; a large one a Unix time.
        return max(value - now, 0.0) if value > 1e9 else max(value, 0.0)
    return None


_EXISTS_WORDS: Final = ("exist", "duplicate", "already registered", "already a member")


def _says_exists(code: str, detail: str) -> bool:
    """Whether a 409 means "it is already there" (ALREADY_EXISTS) rather than a state clash.

    A conflict about state ("already completed", "still in progress") is ABORTED.
    """
    text = f"{code} {detail}".lower()
    return any(word in text for word in _EXISTS_WORDS)


def _parse_error_body(body: bytes, content_type: str) -> tuple[str, str, list[FieldViolation]]:
    """(detail, upstream code, field violations) from a documented or FastAPI error body."""
    if not body:
        return "", "", []
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = content_type.split(";")[0].strip() or "a body"
        if "html" in kind:
            return f"upstream answered an HTML page ({len(body)} bytes) instead of JSON", "", []
        return f"upstream answered {kind} ({len(body)} bytes) that is not JSON", "", []
    if not isinstance(parsed, dict):
        return "", "", []
    detail = parsed.get("detail")
    code = parsed.get("code")
    code_text = code if isinstance(code, str) else ""
    if isinstance(detail, list):
        violations = [_violation(item) for item in detail if isinstance(item, dict)]
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations if v.field)
        return (
            f"request validation failed: {summary}" if summary else "request validation failed",
            code_text or "VALIDATION_FAILED",
            violations,
        )
    if isinstance(detail, str):
        return detail, code_text, []
    message = parsed.get("message") or parsed.get("error")
    return (message if isinstance(message, str) else ""), code_text, []


_LOCATION_PREFIXES: Final = frozenset({"body", "query", "path", "header", "cookie"})


def _violation(item: Mapping[str, Any]) -> FieldViolation:
    loc = item.get("loc")
    parts = [str(p) for p in loc] if isinstance(loc, list) else []
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    name = ".".join(parts)
    msg = item.get("msg")
    return FieldViolation(name, msg if isinstance(msg, str) else "invalid value")
