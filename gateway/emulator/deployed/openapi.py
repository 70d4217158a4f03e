"""The OpenAPI 3.1 document of the deployed dialect, generated from its declarations.

Shaped like FastAPI's: an operation id is the function name and the path with
every non-word character as `_`, then the verb; a success answer carries the
declared type (none for 204); an operation taking parameters or a body can
also answer 422 `HTTPValidationError`; secured operations name `HTTPBearer`.
Components are every model reachable from the operations, sorted by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from .data import SERVICE_TITLE, SERVICE_VERSION
from .models import HTTP_VALIDATION_ERROR
from .operations import Operation
from .schema import Model, Ref, Schema, Str, closure

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "HTTPBearer"
JSON = "application/json"
DESCRIPTION = (
    "The Gagiteck REST service as deployed, reproduced by the gateway's emulator "
    "(deployed dialect). Generated from the emulator's own declarations."
)


def operation_id(operation: Operation) -> str:
    return re.sub(r"\W", "_", operation.name + operation.path) + "_" + operation.method.lower()


def _summary(operation: Operation) -> str:
    return operation.name.strip("_").replace("_", " ").title()


def _content(schema: Schema) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {**Str().schema(), "title": name.replace("_", " ").title()},
        }
        for name in operation.path_params
    ]
    parameters.extend(
        {"name": param.name, "in": "query", "required": param.required, "schema": param.schema()}
        for param in operation.query
    )
    return parameters


def _responses(operation: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Successful Response"}
    if operation.answer is not None:
        success["content"] = _content(operation.answer.schema())
    responses: dict[str, Any] = {str(operation.status): success}
    for status, description in operation.described:
        responses[str(status)] = {"description": description}
    if operation.validates:
        responses["422"] = {
            "description": "Validation Error",
            "content": _content(Ref(HTTP_VALIDATION_ERROR).schema()),
        }
    return responses


def _operation(operation: Operation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": _summary(operation),
        "operationId": operation_id(operation),
    }
    parameters = _parameters(operation)
    if parameters:
        entry["parameters"] = parameters
    if operation.body is not None:
        entry["requestBody"] = {
            "content": _content(Ref(operation.body).schema()),
            "required": True,
        }
    entry["responses"] = _responses(operation)
    if operation.secured:
        entry["security"] = [{SECURITY_SCHEME: []}]
    return entry


def _roots(operations: Sequence[Operation]) -> Iterator[Model]:
    for operation in operations:
        if operation.body is not None:
            yield operation.body
        if operation.answer is not None:
            yield from operation.answer.models()
        if operation.validates:
            yield HTTP_VALIDATION_ERROR


def document(operations: Sequence[Operation], tags: Sequence[str]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    models = closure(_roots(operations))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": SERVICE_TITLE, "description": DESCRIPTION, "version": SERVICE_VERSION},
        "paths": paths,
        "components": {
            "schemas": {name: models[name].schema() for name in sorted(models)},
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
        },
        "tags": [{"name": tag} for tag in tags],
    }
