"""Request validation with FastAPI's (pydantic v2) error vocabulary.

A schema is a sequence of `Field`s, each with a check. A check appends
issues to a list and returns the (coerced) value or `INVALID`, so that every
problem of a request is reported at once, the way FastAPI reports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from .errors import Issue, RequestValidationError, issue

Loc = tuple[str | int, ...]
Check = Callable[[Any, Loc, list[Issue]], Any]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


INVALID: Any = _Sentinel("INVALID")
MISSING: Any = _Sentinel("MISSING")
_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _fail(issues: list[Issue], entry: Issue) -> Any:
    issues.append(entry)
    return INVALID


def _bounds(
    value: float, loc: Loc, issues: list[Issue], raw: Any, ge: float | None, le: float | None
) -> Any:
    if ge is not None and value < ge:
        msg = f"Input should be greater than or equal to {ge}"
        return _fail(issues, issue(loc, "greater_than_equal", msg, raw, ge=ge))
    if le is not None and value > le:
        msg = f"Input should be less than or equal to {le}"
        return _fail(issues, issue(loc, "less_than_equal", msg, raw, le=le))
    return value


def string(min_length: int = 0) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if not isinstance(value, str):
            return _fail(issues, issue(loc, "string_type", "Input should be a valid string", value))
        if len(value) < min_length:
            unit = "character" if min_length == 1 else "characters"
            msg = f"String should have at least {min_length} {unit}"
            return _fail(issues, issue(loc, "string_too_short", msg, value, min_length=min_length))
        return value

    return check


def _to_int(value: Any, loc: Loc, issues: list[Issue]) -> Any:
    if isinstance(value, bool):
        return _fail(issues, issue(loc, "int_type", "Input should be a valid integer", value))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        msg = "Input should be a valid integer, got a number with a fractional part"
        return _fail(issues, issue(loc, "int_from_float", msg, value))
    if isinstance(value, str):
        if _INT_TEXT.match(value):
            return int(value)
        msg = "Input should be a valid integer, unable to parse string as an integer"
        return _fail(issues, issue(loc, "int_parsing", msg, value))
    return _fail(issues, issue(loc, "int_type", "Input should be a valid integer", value))


def integer(ge: int | None = None, le: int | None = None) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        number = _to_int(value, loc, issues)
        if number is INVALID:
            return INVALID
        return _bounds(number, loc, issues, value, ge, le)

    return check


def _to_float(value: Any, loc: Loc, issues: list[Issue]) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            msg = "Input should be a valid number, unable to parse string as a number"
            return _fail(issues, issue(loc, "float_parsing", msg, value))
    return _fail(issues, issue(loc, "float_type", "Input should be a valid number", value))


def number(ge: float | None = None, le: float | None = None) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        result = _to_float(value, loc, issues)
        if result is INVALID:
            return INVALID
        return _bounds(result, loc, issues, value, ge, le)

    return check


def boolean() -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if isinstance(value, bool):
            return value
        return _fail(issues, issue(loc, "bool_type", "Input should be a valid boolean", value))

    return check


def json_object() -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if isinstance(value, dict):
            return value
        return _fail(issues, issue(loc, "dict_type", "Input should be a valid dictionary", value))

    return check


def any_json() -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        return value

    return check


def list_of(item: Check) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if not isinstance(value, list):
            return _fail(issues, issue(loc, "list_type", "Input should be a valid list", value))
        before = len(issues)
        items = [item(element, (*loc, index), issues) for index, element in enumerate(value)]
        return INVALID if len(issues) > before else items

    return check


def _expected(choices: Sequence[str]) -> str:
    quoted = [f"'{c}'" for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def literal(*choices: str, kind: str = "literal_error") -> Check:
    expected = _expected(choices)

    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if isinstance(value, str) and value in choices:
            return value
        msg = f"Input should be {expected}"
        return _fail(issues, issue(loc, kind, msg, value, expected=expected))

    return check


def email() -> Check:
    as_string = string()

    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        text = as_string(value, loc, issues)
        if text is INVALID:
            return INVALID
        if _EMAIL.match(text):
            return text.strip().lower()
        msg = "value is not a valid email address: The email address is not valid."
        return _fail(issues, issue(loc, "value_error", msg, value, reason="invalid email"))

    return check


def http_url() -> Check:
    as_string = string()

    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        text = as_string(value, loc, issues)
        if text is INVALID:
            return INVALID
        parts = urlsplit(text)
        if not parts.scheme or not parts.netloc:
            msg = "Input should be a valid URL, relative URL without a base"
            return _fail(issues, issue(loc, "url_parsing", msg, value, error="invalid URL"))
        if parts.scheme not in ("http", "https"):
            msg = "URL scheme should be 'http' or 'https'"
            return _fail(
                issues, issue(loc, "url_scheme", msg, value, expected_schemes="'http' or 'https'")
            )
        return text

    return check


def nullable(inner: Check) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        return None if value is None else inner(value, loc, issues)

    return check


@dataclass(frozen=True)
class Field:
    """One member of a JSON object: its check, and whether it must be present."""

    name: str
    check: Check
    required: bool = False
    default: Callable[[], Any] | None = None


def _object_type_issue(value: Any, loc: Loc) -> Issue:
    msg = "Input should be a valid dictionary or object to extract fields from"
    return issue(loc, "model_attributes_type", msg, value)


def validate_object(
    value: Any, schema: Sequence[Field], loc: Loc, issues: list[Issue], *, partial: bool = False
) -> Any:
    """Check a JSON object against a schema; unknown members are ignored.

    With `partial`, only the members present are checked and returned (PATCH).
    """
    if not isinstance(value, dict):
        return _fail(issues, _object_type_issue(value, loc))
    before = len(issues)
    result: dict[str, Any] = {}
    for member in schema:
        _validate_member(value, member, loc, issues, result, partial)
    return INVALID if len(issues) > before else result


def _validate_member(
    value: Mapping[str, Any],
    member: Field,
    loc: Loc,
    issues: list[Issue],
    result: dict[str, Any],
    partial: bool,
    missing_input: Any = MISSING,
) -> None:
    if member.name in value:
        result[member.name] = member.check(value[member.name], (*loc, member.name), issues)
    elif partial:
        return
    elif member.required:
        shown = value if missing_input is MISSING else missing_input
        issues.append(issue((*loc, member.name), "missing", "Field required", shown))
    elif member.default is not None:
        result[member.name] = member.default()


def nested(schema: Sequence[Field], *, partial: bool = False) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        return validate_object(value, schema, loc, issues, partial=partial)

    return check


def parse_json(raw: bytes) -> Any:
    """Decode a request body; `MISSING` when empty, 422 `json_invalid` when malformed."""
    if not raw.strip():
        return MISSING
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        entry = issue(("body", exc.pos), "json_invalid", "JSON decode error", {}, error=exc.msg)
        raise RequestValidationError([entry]) from exc


def validate_body(
    body: Any, schema: Sequence[Field], *, partial: bool = False, optional: bool = False
) -> dict[str, Any]:
    """Validate a decoded body (possibly `MISSING`) or raise the FastAPI 422."""
    if body is MISSING:
        if not optional:
            raise RequestValidationError([issue(("body",), "missing", "Field required", None)])
        body = {}
    issues: list[Issue] = []
    result = validate_object(body, schema, ("body",), issues, partial=partial)
    if issues:
        raise RequestValidationError(issues)
    assert isinstance(result, dict)
    return result


def validate_query(query: Mapping[str, str], schema: Sequence[Field]) -> dict[str, Any]:
    """Validate query parameters (strings) or raise the FastAPI 422."""
    issues: list[Issue] = []
    result: dict[str, Any] = {}
    for member in schema:
        _validate_member(query, member, ("query",), issues, result, False, None)
    if issues:
        raise RequestValidationError(issues)
    return result


PAGE = (
    Field("limit", integer(ge=1, le=100), default=lambda: 20),
    Field("offset", integer(ge=0), default=lambda: 0),
)
