"""The error table and its helpers, without a network."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import (
    ANSWERED,
    NOT_SENT,
    OUTCOME_UNCERTAIN,
    RETRYABLE_STATUSES,
    FailureReason,
    UpstreamAnswer,
    UpstreamHTTPError,
    UpstreamTransportError,
    http_to_code,
    to_status,
    upper_snake,
)
from gateway.traffic.breaker import Verdict, verdict_for_status, verdict_of
from gateway.traffic.retry import FailureKind, classify_failure, is_retryable


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


# --------------------------------------------------------------------------- one home per rule


def test_the_retryable_statuses_are_the_breakers_failures_and_the_retries_statuses() -> None:
    for status in range(400, 600):
        failed = verdict_for_status(status) is Verdict.FAILURE
        assert failed is (status in RETRYABLE_STATUSES)
        retried = is_retryable("GET", False, classify_failure(http_error(status)))
        assert retried is (status in RETRYABLE_STATUSES or status == 429)


@pytest.mark.parametrize("reason", list(FailureReason), ids=str)
def test_every_transport_reason_means_one_thing_to_retries_and_the_breaker(
    reason: FailureReason,
) -> None:
    groups = [reason in NOT_SENT, reason in OUTCOME_UNCERTAIN, reason in ANSWERED]
    assert sum(groups) <= 1
    error = UpstreamTransportError("x", reason, "h", "GET /r")
    kind = classify_failure(error).kind
    verdict = verdict_of(error)
    if reason in NOT_SENT:
        assert (kind, verdict) == (FailureKind.NOT_SENT, Verdict.FAILURE)
    elif reason in OUTCOME_UNCERTAIN:
        assert (kind, verdict) == (FailureKind.OUTCOME_UNKNOWN, Verdict.FAILURE)
    elif reason in ANSWERED:
        assert (kind, verdict) == (FailureKind.FINAL, Verdict.SUCCESS)
    else:
        assert kind is FailureKind.FINAL


def http_error(status: int) -> UpstreamHTTPError:
    return UpstreamHTTPError(UpstreamAnswer(status, {}, b"", "", "h"), "GET /r")
