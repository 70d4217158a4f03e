"""Reading an upstream's error body: the documented form and FastAPI's.

The REST API documents ``{"detail": "...", "code": "...", "status": 404}``; its FastAPI
validation errors are ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``. Both
become an :class:`ErrorBody`: a detail for the status message, the upstream's code (the
ErrorInfo reason) and the field violations (a BadRequest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One field and what is wrong with it (an entry of a BadRequest detail)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class ErrorBody:
    detail: str = ""
    code: str = ""
    violations: list[FieldViolation] = field(default_factory=list)

    @property
    def says_exists(self) -> bool:
        """Whether a 409 means "it is already there" (ALREADY_EXISTS) rather than a clash
        of states ("already completed", "still in progress": ABORTED)."""
        text = f"{self.code} {self.detail}".lower()
        return any(word in text for word in _EXISTS_WORDS)


_EXISTS_WORDS: Final = ("exist", "duplicate", "already registered", "already a member")
_LOCATION_PREFIXES: Final = frozenset({"body", "query", "path", "header", "cookie"})


def parse_error_body(body: bytes, content_type: str) -> ErrorBody:
    """What an error answer's body says; a body that is not JSON is described instead."""
    if not body:
        return ErrorBody()
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = content_type.split(";")[0].strip() or "a body"
        if "html" in kind:
            return ErrorBody(f"upstream answered an HTML page ({len(body)} bytes) instead of JSON")
        return ErrorBody(f"upstream answered {kind} ({len(body)} bytes) that is not JSON")
    if not isinstance(parsed, dict):
        return ErrorBody()
    detail = parsed.get("detail")
    code = parsed.get("code")
    code_text = code if isinstance(code, str) else ""
    if isinstance(detail, list):
        violations = [_violation(item) for item in detail if isinstance(item, dict)]
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations if v.field)
        return ErrorBody(
            f"request validation failed: {summary}" if summary else "request validation failed",
            code_text or "VALIDATION_FAILED",
            violations,
        )
    if isinstance(detail, str):
        return ErrorBody(detail, code_text)
    message = parsed.get("message") or parsed.get("error")
    return ErrorBody(message if isinstance(message, str) else "", code_text)


def _violation(item: Mapping[str, Any]) -> FieldViolation:
    loc = item.get("loc")
    parts = [str(p) for p in loc] if isinstance(loc, list) else []
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    name = ".".join(parts)
    msg = item.get("msg")
    return FieldViolation(name, msg if isinstance(msg, str) else "invalid value")
