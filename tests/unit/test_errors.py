"""The error table and its helpers, without a network."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import UpstreamAnswer, UpstreamHTTPError, http_to_code, to_status, upper_snake


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (409, grpc.StatusCode.ABORTED),
        (422, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (499, grpc.StatusCode.CANCELLED),
        (500, grpc.StatusCode.INTERNAL),
        (501, grpc.StatusCode.UNIMPLEMENTED),
        (502, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (418, grpc.StatusCode.FAILED_PRECONDITION),
        (599, grpc.StatusCode.INTERNAL),
    ],
)
def test_http_to_code(status: int, code: grpc.StatusCode) -> None:
    assert http_to_code(status) is code


def test_conflict_that_exists() -> None:
    assert http_to_code(409, conflict_exists=True) is grpc.StatusCode.ALREADY_EXISTS


def test_upper_snake() -> None:
    assert upper_snake("not-found") == "NOT_FOUND"
    assert upper_snake("Rate limited!") == "RATE_LIMITED"


def test_unexpected_exception_becomes_internal_without_its_text() -> None:
    status = to_status(RuntimeError("secret ggt_abc in a traceback"), "rid")
    assert status.code is grpc.StatusCode.INTERNAL
    assert "ggt_abc" not in status.message
    assert all(
        b"ggt_abc" not in (v if isinstance(v, bytes) else v.encode())
        for _, v in status.trailing_metadata
    )


def test_error_body_not_json_is_described() -> None:
    answer = UpstreamAnswer(500, {}, b"<html>oops</html>", "text/html", "api.example.com")
    error = UpstreamHTTPError(answer, "GET /v1/agents")
    assert "HTML page" in error.message
    assert error.domain == "api.example.com"
