"""A proto the gateway has never seen, served from a descriptor set with no Python for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from gateway.config.gateway import GatewayConfig
from gateway.server.gateway import Gateway
from tests.support.harness import RunningGateway, serving_app, serving_gateway


async def echo(request: web.Request) -> web.Response:
    """Answers a Thing that reports the request, in FastAPI's drifted style."""
    body = await request.read()
    if request.method == "DELETE":
        return web.Response(status=204)
    thing = {
        "id": request.match_info.get("thing_id", "t"),
        "name": "echoed",
        "weight": "2.5",  # a number as a string
        "colour": "blue",
        "count": "12345678901",  # int64 as a string
        "seen_at": "2024-01-15T10:30:00.123456",  # no offset
        "sizes": [1, "2", None],
        "flags": {"a": 1, "b": "2"},
        "extra": [1, {"x": None}],
        "unknown": {"ignored": True},
        "echo": {
            "method": request.method,
            "path": request.raw_path.split("?")[0],
            "query": sorted(request.query.items()),
            "body": orjson.loads(body) if body else None,
        },
    }
    return web.json_response(thing)


@pytest_asyncio.fixture
async def gateway(echo_service: ServiceDescriptor) -> AsyncIterator[RunningGateway]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serving_app(app) as url, serving_gateway(url, [echo_service]) as running:
        yield running


def _call(running: RunningGateway, service: ServiceDescriptor, name: str) -> Any:
    method = service.methods_by_name[name]
    response_cls = GetMessageClass(method.output_type)
    return running.channel.unary_unary(
        f"/{service.full_name}/{name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )


def _request(service: ServiceDescriptor, name: str, **fields: Any) -> Any:
    return GetMessageClass(service.methods_by_name[name].input_type)(**fields)


@pytest.mark.asyncio
async def test_get_with_query_parameters(
    gateway: RunningGateway, echo_service: ServiceDescriptor
) -> None:
    request = _request(
        echo_service,
        "GetThing",
        shelf=3,
        thing_id="t-1",
        tags=["a", "b"],
        colour=1,
        paging={"size": 5},
    )
    thing = await _call(gateway, echo_service, "GetThing")(request, timeout=5)
    echo = thing.echo
    assert echo["method"] == "GET"
    assert echo["path"] == "/v2/shelves/3/things/t-1"
    query = [tuple(pair) for pair in echo["query"]]
    assert sorted(query) == [
        ("colour", "dark_red"),
        ("paging.size", "5"),
        ("tags", "a"),
        ("tags", "b"),
    ]
    assert thing.weight == 2.5
    assert thing.count == 12345678901
    assert thing.colour == 2
    assert thing.seen_at.ToDatetime().isoformat() == "2024-01-15T10:30:00.123456"
    assert list(thing.sizes) == [1, 2]
    assert dict(thing.flags) == {"a": 1, "b": 2}


@pytest.mark.asyncio
async def test_custom_verb_and_body_field(
    gateway: RunningGateway, echo_service: ServiceDescriptor
) -> None:
    request = _request(
        echo_service,
        "ArchiveThing",
        thing_id="t1",
        actor="me",
        note={"text": "bye", "at": {"seconds": 0}},
    )
    thing = await _call(gateway, echo_service, "ArchiveThing")(request, timeout=5)
    assert thing.echo["path"] == "/v2/things/t1:archive"
    assert thing.echo["body"] == {"text": "bye", "at": "1970-01-01T00:00:00Z"}


@pytest.mark.asyncio
async def test_patch_with_mask_nested_variable_and_response_body(
    gateway: RunningGateway, echo_service: ServiceDescriptor
) -> None:
    request = _request(
        echo_service,
        "PatchThing",
        thing={"id": "t9", "name": "n", "weight": 1.5},
        update_mask={"paths": ["weight"]},
    )
    response = await _call(gateway, echo_service, "PatchThing")(request, timeout=5)
    assert response.thing.echo["method"] == "PATCH"
    assert response.thing.echo["path"] == "/v2/things/t9"
    assert response.thing.echo["body"] == {"weight": 1.5}


@pytest.mark.asyncio
async def test_delete_answers_empty(
    gateway: RunningGateway, echo_service: ServiceDescriptor
) -> None:
    request = _request(echo_service, "DropThing", shelf=1, thing_id="x")
    await _call(gateway, echo_service, "DropThing")(request, timeout=5)


@pytest.mark.asyncio
async def test_bad_id_sends_nothing(
    gateway: RunningGateway, echo_service: ServiceDescriptor
) -> None:
    request = _request(echo_service, "GetThing", shelf=1, thing_id="../admin")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(gateway, echo_service, "GetThing")(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_descriptor_set_from_configuration(echo_descriptor_set: Path) -> None:
    config = GatewayConfig(descriptor_sets=(str(echo_descriptor_set),))
    gateway = Gateway(config, "http://127.0.0.1:9")
    assert "/testonly.v1.EchoService/GetThing" in {r.full_method for r in gateway.routes}
    assert "/gagiteck.v1.AgentService/GetAgent" in {r.full_method for r in gateway.routes}
