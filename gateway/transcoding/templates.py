"""Path templates: parsed once at start-up, filled in per call.

A template such as ``/v1/agents/{agent_id}:cancel`` becomes literal segments and
:class:`PathVariable` s (``{field}``, ``{field=*}``, nested ``{a.b}``), plus a trailing custom
verb. Every variable is exactly one path segment: multi-segment ``**`` variables are
refused at start-up with a :class:`RouteError`. Per call, each value is checked
(:func:`segment_problem`) and percent-encoded, so that no caller's id can change the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.error_body import FieldViolation
from gateway.errors import InvalidRequest

MAX_SEGMENT_LENGTH: Final = 256
"""Longest path variable accepted; upstream ids are far shorter."""

_LITERAL = re.compile(r"^[A-Za-z0-9._~\-]+$")
_VARIABLE = re.compile(r"^\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(?:=\*)?\}$")
_FORBIDDEN = frozenset("/\\?#%")
_PLAIN_SEGMENT: Final = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9._~-]{{0,{MAX_SEGMENT_LENGTH - 1}}}")
"""Ids that are one valid segment as they stand (unreserved characters, not "." or "..")."""
_PATH_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
    }
)


class RouteError(Exception):
    """An annotation the gateway cannot honour; raised at start-up only."""

    def __init__(self, method: str, problem: str) -> None:
        super().__init__(f"{method}: {problem}")
        self.method = method


@dataclass(frozen=True, slots=True)
class PathVariable:
    """A path variable: the field path it reads and where it sits in the template."""

    field_path: tuple[str, ...]
    name: str  # dotted, for error messages


def read_field(message: Message, path: tuple[str, ...]) -> Any:
    value: Any = message
    for name in path:
        value = getattr(value, name)
    return value


def encode_segment(variable: PathVariable, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_SEGMENT.fullmatch(text):  # the common case: nothing to check or escape
        return text
    problem = segment_problem(text)
    if problem is not None:
        raise InvalidRequest(f"{variable.name} {problem}", [FieldViolation(variable.name, problem)])
    return quote(text, safe="-._~")


def segment_problem(text: str) -> str | None:
    """Why ``text`` cannot be one path segment, or None when it can."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_SEGMENT_LENGTH:
        return f"is longer than {MAX_SEGMENT_LENGTH} characters"
    if text in (".", ".."):
        return "must not be a relative path segment"
    for ch in text:
        if ch in _FORBIDDEN:
            return f"must not contain {ch!r}"
        if ch.isspace() or not ch.isprintable():
            return "must not contain white space or control characters"
    return None


def parse_template(
    method: str, template: str, request: Descriptor
) -> tuple[tuple[str | PathVariable, ...], str, list[PathVariable]]:
    if not template.startswith("/"):
        raise RouteError(method, f"path {template!r} must start with '/'")
    path, verb = template, ""
    last_slash = template.rfind("/")
    colon = template.rfind(":")
    if colon > last_slash and not template[last_slash:].endswith("}"):
        path, verb = template[:colon], template[colon + 1 :]
        if not _LITERAL.match(verb):
            raise RouteError(method, f"custom verb {verb!r} in {template!r} is not a plain word")
    segments: list[str | PathVariable] = []
    variables: list[PathVariable] = []
    for raw in path[1:].split("/") if path != "/" else ():
        if _LITERAL.match(raw):
            segments.append(raw)
            continue
        match = _VARIABLE.match(raw)
        if match is None:
            raise RouteError(
                method,
                f"segment {raw!r} of {template!r} is neither a literal nor a single-segment "
                "variable like {field} (multi-segment '**' variables are not supported)",
            )
        variable = _resolve_variable(method, match.group(1), request)
        if variable.name in {v.name for v in variables}:
            raise RouteError(method, f"variable {variable.name!r} appears twice in {template!r}")
        segments.append(variable)
        variables.append(variable)
    return tuple(segments), verb, variables


def _resolve_variable(method: str, dotted: str, request: Descriptor) -> PathVariable:
    message: Descriptor | None = request
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        found = message.fields_by_name.get(part) if message is not None else None
        if found is None:
            raise RouteError(method, f"path variable {dotted!r} names no field of {request.name}")
        if found.is_repeated:
            raise RouteError(method, f"path variable {dotted!r} is a repeated field")
        if i < len(parts) - 1:
            message = found.message_type
        elif found.type not in _PATH_TYPES:
            raise RouteError(method, f"path variable {dotted!r} must be a string or integer field")
    return PathVariable(tuple(parts), dotted)
