"""An upstream's OpenAPI document, read for what drift checks need: its operations and
the shapes of their parameters, bodies and answers.

Only the parts a FastAPI service publishes are read: paths and methods, parameters
(`in`, `name`, `required`), a JSON request body, the JSON schema of each answer, and
schemas built from `$ref`, `anyOf` (FastAPI writes `Optional[X]` as `anyOf: [X, null]`),
`type`, `properties`, `required`, `items` and `additionalProperties`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

METHODS: Final = ("get", "put", "post", "delete", "patch")
_VARIABLE: Final = re.compile(r"\{[^}]*\}")


class OpenApiError(ValueError):
    """The document is not an OpenAPI document the checks can read."""


def path_key(method: str, template: str) -> tuple[str, str]:
    """``GET /v1/agents/{}``: an operation's identity, whatever its variables are named."""
    return method.upper(), _VARIABLE.sub("{}", template.split(":")[0])


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    where: str  # path, query, header, cookie
    required: bool


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    parameters: tuple[Parameter, ...]
    body: Mapping[str, Any] | None
    """The JSON request body's schema (references resolved lazily), or None."""
    answer: Mapping[str, Any] | None
    """The JSON schema of the first 2xx answer; None when it declares none."""
    answer_status: str

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


class OpenApi:
    """A parsed document: its operations by :func:`path_key`, and `$ref` resolution."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("paths"), Mapping):
            raise OpenApiError("no `paths` object: not an OpenAPI document")
        self.document = document
        self.title = str(document.get("info", {}).get("title", ""))
        self.version = str(document.get("info", {}).get("version", ""))
        self.operations: dict[tuple[str, str], Operation] = {}
        for path, item in document["paths"].items():
            if not isinstance(item, Mapping):
                continue
            for method in METHODS:
                op = item.get(method)
                if isinstance(op, Mapping):
                    operation = self._operation(method.upper(), str(path), op)
                    self.operations[path_key(method, str(path))] = operation

    def _operation(self, method: str, path: str, op: Mapping[str, Any]) -> Operation:
        parameters = tuple(
            Parameter(str(p.get("name")), str(p.get("in")), bool(p.get("required")))
            for p in (self.resolve(x) for x in op.get("parameters", ()))
        )
        body = _json_schema(op.get("requestBody"))
        answer: Mapping[str, Any] | None = None
        status = ""
        for code, response in sorted(op.get("responses", {}).items()):
            if str(code).startswith("2"):
                status = str(code)
                answer = _json_schema(self.resolve(response))
                break
        return Operation(method, path, parameters, body, answer, status)

    def resolve(self, schema: Any) -> Any:
        """``schema`` with a top-level ``$ref`` followed (repeatedly)."""
        seen = 0
        while isinstance(schema, Mapping) and "$ref" in schema:
            ref = str(schema["$ref"])
            if not ref.startswith("#/"):
                raise OpenApiError(f"only local references are read, not {ref}")
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is None:
                raise OpenApiError(f"{ref} resolves to nothing")
            schema = node
            seen += 1
            if seen > 64:
                raise OpenApiError(f"{ref} refers to itself")
        return schema

    def shape(self, schema: Any) -> Shape:
        """What a schema is, with `$ref` and `anyOf [X, null]` seen through."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping):
            return Shape("any")
        variants = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(variants, list):
            real = [self.shape(v) for v in variants if self.resolve(v).get("type") != "null"]
            if len(real) == 1:
                return real[0]
            return Shape("any")
        kind = schema.get("type")
        if kind == "array":
            return Shape("array", items=schema.get("items", {}))
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties")
            if isinstance(properties, Mapping) and properties:
                return Shape("object", properties=properties)
            return Shape("map")
        if kind in ("string", "integer", "number", "boolean"):
            return Shape("scalar", scalar=str(kind))
        return Shape("any")

    def unmatched(self, matched: set[tuple[str, str]]) -> Iterator[Operation]:
        for key, operation in sorted(self.operations.items()):
            if key not in matched:
                yield operation


@dataclass(frozen=True, slots=True)
class Shape:
    """A schema's kind: ``object`` (with properties), ``map`` (free-form object),
    ``array`` (with items), ``scalar`` or ``any``."""

    kind: str
    properties: Mapping[str, Any] | None = None
    items: Any = None
    scalar: str = ""


def _json_schema(container: Any) -> Mapping[str, Any] | None:
    if not isinstance(container, Mapping):
        return None
    content = container.get("content")
    if not isinstance(content, Mapping):
        return None
    media = content.get("application/json")
    if not isinstance(media, Mapping):
        return None
    schema = media.get("schema")
    if not isinstance(schema, Mapping) or not schema:
        return None
    return schema
