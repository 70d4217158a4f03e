"""Helpers for the deployed-dialect tests: the configuration, and answers checked against
the dialect's own OpenAPI document (itself compared with the service's in
test_deployed_openapi.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from gateway.emulator import EmulatorConfig
from gateway.emulator.deployed.routes import DOCUMENT

from .emulator_testkit import FAST, Reply

DEPLOYED = dataclasses.replace(FAST, dialect="deployed")
NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
REPO = Path(__file__).resolve().parents[2]
DEPLOYED_DOCUMENT = REPO.parent / "shared" / "upstream" / "deployed-openapi.json"
SECURITY_HEADERS = (
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "Referrer-Policy",
    "Permissions-Policy",
)


def deployed_config(**changes: Any) -> EmulatorConfig:
    return dataclasses.replace(DEPLOYED, **changes)


def _component(ref: str, document: dict[str, Any]) -> dict[str, Any]:
    name = ref.removeprefix("#/components/schemas/")
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def problems(value: Any, schema: dict[str, Any], document: dict[str, Any], where: str) -> list[str]:
    """How `value` departs from `schema`.

    Stricter than JSON Schema where FastAPI is: an object answered for a model
    has exactly the model's members (all present, unset ones as null), and every
    date-time is naive ISO 8601.
    """
    if "$ref" in schema:
        return problems(value, _component(schema["$ref"], document), document, where)
    if "anyOf" in schema:
        if any(not problems(value, choice, document, where) for choice in schema["anyOf"]):
            return []
        return [f"{where}: {value!r} matches none of {schema['anyOf']}"]
    kind = schema.get("type")
    checks = {
        "string": lambda: isinstance(value, str),
        "integer": lambda: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda: isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": lambda: isinstance(value, bool),
        "null": lambda: value is None,
        "object": lambda: isinstance(value, dict),
        "array": lambda: isinstance(value, list),
    }
    if kind is None:
        return []
    if not checks[kind]():
        return [f"{where}: {value!r} is not of type {kind}"]
    if kind == "string" and schema.get("format") == "date-time" and not NAIVE_TIME.match(value):
        return [f"{where}: {value!r} is not a naive ISO timestamp"]
    if kind == "array":
        item = schema.get("items", {})
        return [
            p for i, v in enumerate(value) for p in problems(v, item, document, f"{where}[{i}]")
        ]
    if kind == "object" and "properties" in schema:
        declared = schema["properties"]
        found = [f"{where}: missing {name}" for name in declared if name not in value]
        found += [f"{where}: unexpected {name}" for name in value if name not in declared]
        for name, member in declared.items():
            if name in value:
                found += problems(value[name], member, document, f"{where}.{name}")
        return found
    return []


def assert_answer(reply: Reply, method: str, path: str) -> Any:
    """The reply's body, after checking it against the document's answer for its status."""
    operation = DOCUMENT["paths"][path][method.lower()]
    response = operation["responses"].get(str(reply.status))
    assert response is not None, f"{method} {path} does not declare {reply.status}: {reply.body}"
    content = response.get("content")
    if content is None:
        assert reply.raw == b"", reply.raw
        return None
    schema = content["application/json"]["schema"]
    found = problems(reply.body, schema, DOCUMENT, "$")
    assert not found, found
    return reply.body


def detail(reply: Reply, status: int) -> str:
    """The `detail` of a FastAPI HTTPException answer (nothing else in the body)."""
    assert reply.status == status, (reply.status, reply.body)
    assert set(reply.body) == {"detail"}, reply.body
    message = reply.body["detail"]
    assert isinstance(message, str)
    return message
