"""The deployed dialect's /openapi.json: generated, self-consistent, and structurally the
document the deployed service publishes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.emulator import RunningEmulator
from gateway.emulator.context import ROUTES_KEY

from .deployed_testkit import DEPLOYED_DOCUMENT
from .emulator_testkit import Api

COSMETIC = frozenset({"title", "description", "summary", "examples"})


def _structure(value: Any) -> Any:
    """The document without what need not match (titles, descriptions, examples)."""
    if isinstance(value, dict):
        return {key: _structure(item) for key, item in value.items() if key not in COSMETIC}
    if isinstance(value, list):
        return [_structure(item) for item in value]
    return value


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


async def _document(dapi: Api) -> dict[str, Any]:
    reply = await dapi.get("/openapi.json")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = reply.body
    return document


@pytest.mark.asyncio
async def test_the_document_matches_the_deployed_service(dapi: Api) -> None:
    if not DEPLOYED_DOCUMENT.is_file():
        pytest.skip(
            f"{DEPLOYED_DOCUMENT} (the deployed service's own OpenAPI document, kept outside "
            "the repository) is not present on this machine"
        )
    theirs = orjson.loads(DEPLOYED_DOCUMENT.read_bytes())
    ours = await _document(dapi)
    assert ours["openapi"] == theirs["openapi"] == "3.1.0"
    assert ours["info"]["version"] == theirs["info"]["version"]
    assert list(ours["paths"]) == list(theirs["paths"])
    mine, upstream = _operations(ours), _operations(theirs)
    assert sorted(mine) == sorted(upstream)
    for key, operation in upstream.items():
        expected = _structure(operation)
        got = _structure(mine[key])
        for part in ("parameters", "requestBody", "responses", "security", "operationId"):
            assert got.get(part) == expected.get(part), (key, part)
        assert got["tags"] == expected["tags"], key
    our_schemas = ours["components"]["schemas"]
    their_schemas = theirs["components"]["schemas"]
    assert sorted(our_schemas) == sorted(their_schemas)
    for name, schema in their_schemas.items():
        assert _structure(our_schemas[name]) == _structure(schema), name
    assert ours["components"]["securitySchemes"] == theirs["components"]["securitySchemes"]
    assert [tag["name"] for tag in ours["tags"]] == [tag["name"] for tag in theirs["tags"]]


@pytest.mark.asyncio
async def test_every_reference_resolves(dapi: Api) -> None:
    document = await _document(dapi)
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    referenced = {ref.removeprefix("#/components/schemas/") for ref in refs}
    assert referenced == set(schemas), "every component is used and every use is declared"
    for name, schema in schemas.items():
        assert schema["type"] == "object", name
        assert set(schema.get("required", [])) <= set(schema["properties"]), name


@pytest.mark.asyncio
async def test_the_document_lists_exactly_the_routes_served(
    deployed: RunningEmulator, dapi: Api
) -> None:
    document = await _document(dapi)
    served = {
        key
        for key, route in deployed.app[ROUTES_KEY].items()
        if not route.control and key != ("GET", "/openapi.json")
    }
    assert served == set(_operations(document))
    for (method, path), route in deployed.app[ROUTES_KEY].items():
        if route.control or path == "/openapi.json":
            continue
        operation = _operations(document)[(method, path)]
        assert ("security" in operation) == (not route.public), (method, path)
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}


@pytest.mark.asyncio
async def test_every_declared_operation_answers_on_its_route(dapi: Api) -> None:
    """No declared route is a 404 or 405 on the server (the aiohttp table matches)."""
    document = await _document(dapi)
    for (method, path), _ in _operations(document).items():
        concrete = path.replace("{", "x").replace("}", "")
        reply = await dapi.call(method, concrete)
        assert reply.status not in (404, 405) or set(reply.body) == {"detail"}, (method, path)
        if reply.status == 404:
            assert reply.body["detail"] != "Not Found", (method, path)


@pytest.mark.asyncio
async def test_the_document_is_stable(dapi: Api) -> None:
    first = (await dapi.get("/openapi.json")).raw
    second = (await dapi.get("/openapi.json")).raw
    assert first == second


@pytest.mark.asyncio
async def test_the_reference_dialect_publishes_no_document(anon: Api) -> None:
    reply = await anon.get("/openapi.json")
    assert reply.status == 404
    assert reply.body["code"] == "NOT_FOUND"
