"""The one place a failure becomes what the caller receives: a code, a message and a
``google.rpc.Status`` with details.

Every status carries exactly one ErrorInfo and a RequestInfo with the request id, and the
details the error adds (BadRequest, RetryInfo, QuotaFailure). Anything that is not a
:class:`~gateway.errors.GatewayError` is a bug: it is answered INTERNAL with a fixed
message, never its text. Statuses are bounded so that they always fit the trailers an
upstream's huge error body would otherwise overflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.errors import GATEWAY_DOMAIN, FailureReason, GatewayError


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
        info = error_details_pb2.ErrorInfo(
            reason=FailureReason.INTERNAL_GATEWAY_ERROR, domain=GATEWAY_DOMAIN
        )
        details = [info]
    details.append(error_details_pb2.RequestInfo(request_id=request_id))
    message = _clip(message, MAX_STATUS_MESSAGE)
    status = _status(code, message, details)
    if status.ByteSize() > MAX_STATUS_DETAILS:  # an upstream's huge error: keep what fits
        status = _status(code, message, [_clipped(d) for d in details])
        if status.ByteSize() > MAX_STATUS_DETAILS:
            status = _status(code, message, [_clipped(info), details[-1]])
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


MAX_STATUS_MESSAGE: Final = 1024
"""Longest status message, in characters; an upstream's longer detail is cut."""
MAX_STATUS_DETAILS: Final = 4096
"""Largest serialized google.rpc.Status: it travels base64-encoded in a trailer, and the
trailers must stay within gRPC's 8 KiB metadata limit (else the caller would see
RESOURCE_EXHAUSTED instead of the real status)."""
_MAX_DETAIL_TEXT: Final = 256
_MAX_VIOLATIONS: Final = 16


def _status(code: grpc.StatusCode, message: str, details: Sequence[Any]) -> status_pb2.Status:
    status = status_pb2.Status(code=_CODE_NUMBER[code], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clipped(detail: Any) -> Any:
    """``detail`` with its texts and lists cut to sizes that fit a trailer."""
    short = _MAX_DETAIL_TEXT
    if isinstance(detail, error_details_pb2.ErrorInfo):
        metadata = {k[:short]: _clip(v, short) for k, v in list(detail.metadata.items())[:32]}
        metadata["details_truncated"] = "true"
        return error_details_pb2.ErrorInfo(
            reason=detail.reason[:short], domain=detail.domain[:short], metadata=metadata
        )
    if isinstance(detail, error_details_pb2.BadRequest):
        return error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_clip(v.field, short), description=_clip(v.description, short)
                )
                for v in detail.field_violations[:_MAX_VIOLATIONS]
            ]
        )
    if isinstance(detail, error_details_pb2.QuotaFailure):
        return error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=_clip(v.subject, short), description=_clip(v.description, short)
                )
                for v in detail.violations[:_MAX_VIOLATIONS]
            ]
        )
    return detail
