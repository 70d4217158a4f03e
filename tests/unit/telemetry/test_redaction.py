"""Credentials are taken out of any text; ordinary text is left alone."""

from __future__ import annotations

import logging

import orjson
import pytest

from gateway.telemetry.logs import JsonFormatter, TextFormatter
from gateway.telemetry.redaction import REDACTED, Redactor, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bearer ggt_live_abc123", "Bearer [REDACTED]"),
        ("key ggt_live_abc123 revoked", "key [REDACTED] revoked"),
        ("authorization: Bearer abc.def.ghi", "authorization: [REDACTED]"),
        ("Authorization=Basic dXNlcjpwYXNz", "Authorization=[REDACTED]"),
        ('{"api_key": "k-123", "x": 1}', '{"api_key": "[REDACTED]", "x": 1}'),
        ("password=hunter2&next=/", "password=[REDACTED]&next=/"),
        ("Cookie: session=abc; theme=dark", "Cookie: [REDACTED]"),
        ("signed with whsec_0123456789", "signed with [REDACTED]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln here", "jwt [REDACTED] here"),
        ("token abcdefghijklmnop", "token [REDACTED]"),
        ("client_secret: xyz", "client_secret: [REDACTED]"),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "agent_123 not found",
        "Missing Bearer token",
        "the token expired",
        "Invalid API key",
        "request validation failed: name: field required",
        "GET /v1/agents/{agent_id}",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_configured_secrets_are_redacted_whatever_they_look_like() -> None:
    redactor = Redactor(("plain-looking-value", None, "ab"))  # "ab" is too short to match
    assert redactor("x plain-looking-value y") == f"x {REDACTED} y"
    assert redactor("ab stays") == "ab stays"
    assert redactor.suspects(b"..plain-looking-value..")
    assert not redactor.suspects(b"agent_1 not found")
    assert redactor.suspects(b"Bearer x")


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelno": 20, "levelname": "INFO"})
    record.msg = message
    record.__dict__.update(extra)
    return record


def test_json_lines_stay_json_when_redacted() -> None:
    formatter = JsonFormatter(Redactor(("s3cr3t-value",)))
    line = formatter.format(
        _record('upstream said "Bearer ggt_abc"', detail='password="x\\"y"', key="s3cr3t-value")
    )
    entry = orjson.loads(line)
    assert entry["message"] == 'upstream said "Bearer [REDACTED]"'
    assert "ggt_abc" not in line
    assert "s3cr3t-value" not in line
    assert entry["key"] == REDACTED
    clean = formatter.format(_record("call", method="a.B/C", code="OK"))
    assert orjson.loads(clean)["method"] == "a.B/C"


def test_text_lines_are_redacted() -> None:
    line = TextFormatter().format(_record("auth failed", header="Bearer ggt_abc"))
    assert "ggt_abc" not in line
    assert "header=Bearer [REDACTED]" in line
