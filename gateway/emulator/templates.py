"""`{{input.x}}` and `{{step_id.output}}` placeholders in workflow step configs.

Placeholders are resolved in every string, recursively through objects and
lists. A string that is exactly one placeholder takes the referenced value
as is (an object stays an object); inside longer text the value is written
out (strings as they are, anything else as JSON). An unknown reference
resolves to the empty string and is reported back to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\s*\}\}")
_UNSET = object()


def lookup(scope: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (list items by index); `_UNSET` when absent."""
    current: Any = scope
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _UNSET
    return current


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _resolve_string(text: str, scope: dict[str, Any], missing: Callable[[str], None]) -> Any:
    whole = _PLACEHOLDER.fullmatch(text.strip())
    if whole is not None:
        value = lookup(scope, whole.group(1))
        if value is _UNSET:
            missing(whole.group(1))
            return ""
        return value

    def substitute(match: re.Match[str]) -> str:
        value = lookup(scope, match.group(1))
        if value is _UNSET:
            missing(match.group(1))
            return ""
        return _as_text(value)

    return _PLACEHOLDER.sub(substitute, text)


def resolve(value: Any, scope: dict[str, Any], missing: Callable[[str], None] | None = None) -> Any:
    """A copy of `value` with every placeholder replaced from `scope`."""
    report = missing or (lambda _path: None)
    if isinstance(value, str):
        return _resolve_string(value, scope, report)
    if isinstance(value, dict):
        return {key: resolve(item, scope, report) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, scope, report) for item in value]
    return value
