"""The error table and its helpers, without a network."""

from __future__ import annotations

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2

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
    upper_snake,
)
from gateway.status import to_status
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


# --------------------------------------------------------------------------- bounded statuses


def _trailer(status: object) -> bytes:
    value = dict(status.trailing_metadata)["grpc-status-details-bin"]  # type: ignore[attr-defined]
    assert isinstance(value, bytes)
    return value


def test_a_huge_upstream_detail_keeps_its_status_within_a_trailer() -> None:
    """A 400 with a 20 KB detail reached callers as RESOURCE_EXHAUSTED (the trailers were
    over gRPC's metadata limit)."""
    body = orjson.dumps({"detail": "x" * 20_000})
    error = UpstreamHTTPError(UpstreamAnswer(400, {}, body, "application/json", "h"), "GET /r")
    status = to_status(error, "rid")
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(status.message) <= 1024
    assert len(_trailer(status)) <= 4096


def test_thousands_of_violations_are_cut_and_say_so() -> None:
    detail = [{"loc": ["body", f"f{n}"], "msg": "m" * 300, "type": "t"} for n in range(5000)]
    body = orjson.dumps({"detail": detail})
    error = UpstreamHTTPError(UpstreamAnswer(422, {}, body, "application/json", "h"), "POST /r")
    status = to_status(error, "rid")
    rich = status_pb2.Status.FromString(_trailer(status))
    assert len(rich.SerializeToString()) <= 4096
    infos = [d for d in rich.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.metadata["details_truncated"] == "true"
    assert info.reason == "VALIDATION_FAILED"


def _readme_errors() -> str:
    from tests.support.paths import REPO

    text = (REPO / "README.md").read_text()
    return text[text.index("## Errors") : text.index("## Performance")]


def test_the_readmes_status_table_is_the_code_table() -> None:
    """Issue 13: the README's table left out 405, 408, 412, 413 and 416."""
    from gateway.errors import _HTTP_TO_CODE

    documented: dict[int, str] = {}
    for line in _readme_errors().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        numbers = cells[0].replace(" ", "").split(",")
        if len(cells) >= 2 and all(number.isdigit() for number in numbers):
            for number in numbers:
                documented[int(number)] = cells[1]
    assert set(documented) == set(_HTTP_TO_CODE) | {409}
    for http_status, code in _HTTP_TO_CODE.items():
        assert documented[http_status] == code.name, http_status


def test_every_failure_reason_is_in_the_readme() -> None:
    text = _readme_errors()
    missing = [reason.value for reason in FailureReason if f"| `{reason.value}` |" not in text]
    assert missing == []
