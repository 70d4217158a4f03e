"""Nothing lost between the contract and the deployed service, field by field.

Against the emulator's deployed dialect, whose `/openapi.json` has the deployed service's
shapes, one test per RPC:

* **up** (every RPC with a request body): a request is generated from the descriptors,
  with every field that the operation's request schema describes set to a value valid for
  the schema (its bounds, formats, and the few names the service checks); the test then
  finds the request the emulator received and requires every described member, under its
  own name or the field's alias, with the value the caller set.
* **down** (every GET): the same request is sent to the upstream directly and through the
  gateway; every member of the upstream's answer that is not null must come back in the
  gateway's message (encoded again as the REST JSON, aliases included) with the same value.

Nothing here lists fields: they come from the messages and from the document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from gateway.server.descriptors import contract_services
from gateway.transcoding.codec import CodecRegistry, MessageCodec, field_rule
from gateway.transcoding.json_values import STRUCT, TIMESTAMP, VALUE
from gateway.transcoding.openapi import OpenApi, path_key
from gateway.transcoding.routes import Route, RouteTable
from tests.support.harness import RunningGateway, serving_gateway

REGISTRY = CodecRegistry()
TABLE = RouteTable.compile(contract_services(), REGISTRY)
PASSWORD = "correct-horse-battery"
# The few values the service checks against what exists (the rest come from the schema).
KNOWN: Mapping[str, Any] = {
    "events": ["execution.completed", "agent.created"],
    "role_id": "developer",
    "current_password": PASSWORD,
}
MASKED = "***"


def _carries_a_body(route: Route) -> bool:
    request = route.request_codec.descriptor
    if route.body_field == "*":
        return any(f.name not in route.bound_fields for f in request.fields)
    return bool(route.body_field)


UP = [r for r in TABLE if r.http_method in ("POST", "PATCH") and _carries_a_body(r)]
DOWN = [r for r in TABLE if r.http_method == "GET" and not r.server_streaming]


@dataclass
class World:
    emulator: RunningEmulator
    gateway: RunningGateway
    document: OpenApi
    session: aiohttp.ClientSession
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def direct(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = self.emulator.url + path
        async with self.session.request(method, url, json=body, headers=headers) as answer:
            assert answer.status < 300, (path, await answer.text())
            return await answer.json() if answer.status != 204 else None

    async def call(self, route: Route, request: Message) -> Message:
        cls = route.response_codec.cls
        method: Any = self.gateway.channel.unary_unary(
            route.full_method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=cls.FromString,
        )
        answer: Message = await method(request, metadata=self.metadata, timeout=10)
        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    config = EmulatorConfig(dialect="deployed", step_delay_seconds=0, stream_delay_seconds=0)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(emulator.url) as gateway,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{emulator.url}/openapi.json") as answer:
            document = OpenApi(await answer.json())
        user = {"email": "fields@example.com", "password": PASSWORD, "name": "F"}
        await session.post(f"{emulator.url}/v1/auth/signup", json=user)
        async with session.post(f"{emulator.url}/v1/auth/login", json=user) as answer:
            token = (await answer.json())["access_token"]
        yield World(emulator, gateway, document, session, token)


# --------------------------------------------------------------------------- up


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("route", UP, ids=lambda r: r.full_method.rpartition(".")[2])
async def test_every_described_member_reaches_the_service(world: World, route: Route) -> None:
    name = route.full_method.rpartition("/")[2]
    operation = world.document.operations[path_key(route.http_method, route.template)]
    assert operation.body is not None or route.also_query, f"{name}: the service reads no body"
    request = route.request_codec.cls()
    await _fill_path(world, route, request)
    target = _body_target(route, request)
    sent = _fill(world.document, target, operation.body or {}) if operation.body else {}
    assert sent or route.also_query, f"{name}: no field of the request is described upstream"
    if route.update is not None and route.update.mask_field:
        getattr(request, route.update.mask_field).paths.extend(sorted(sent))
    for path, _ in route.also_query:
        _set_known(request, path)
    before = len(world.emulator.state.requests.last(10_000))
    refused: grpc.aio.AioRpcError | None = None
    try:
        await world.call(route, request)
    except grpc.aio.AioRpcError as exc:  # a refusal after the request arrived still counts
        refused = exc
    assert refused is None or refused.code() is not grpc.StatusCode.INTERNAL, refused
    received = world.emulator.state.requests.last(10_000)[before:]
    arrived = [r for r in received if r["method"] == route.http_method]
    assert arrived, f"{name}: nothing reached the service"
    body = arrived[-1]["body"] or {}
    for member, value in sent.items():
        assert member in body, f"{name}: {member} did not reach the service"
        if body[member] != MASKED:  # the emulator's log hides credential-like members
            assert _same(body[member], value), (name, member, body[member], value)
    for _, parameter in route.also_query:
        assert parameter in arrived[-1]["query"], f"{name}: ?{parameter} missing"


def _body_target(route: Route, request: Message) -> Message:
    if route.body_field == "*":
        return request
    target: Message = getattr(request, route.body_field)
    return target


def _fill(document: OpenApi, message: Message, schema: Any) -> dict[str, Any]:
    """Set every field of ``message`` the schema describes; returns what the upstream
    should receive, by member name."""
    descriptor: Any = message.DESCRIPTOR
    codec = REGISTRY.codec(descriptor)
    shape = document.shape(schema)
    properties = shape.properties or {}
    expected: dict[str, Any] = {}
    field: Any
    for field in message.DESCRIPTOR.fields:
        member = next((n for n in _names(field) if n in properties), None)
        if member is None or _output_only(field):
            continue
        value = _sample(document, field, properties[member])
        if value is None:
            continue
        _assign(message, field, value)
        expected[member] = codec.encode(message)[field.name]
    return expected


def _sample(document: OpenApi, field: FieldDescriptor, schema: Any) -> Any:
    if field.name in KNOWN:
        return KNOWN[field.name]
    resolved = document.resolve(schema)
    shape = document.shape(schema)
    if field.is_repeated:
        if shape.kind != "array":
            return None
        item = _sample_single(document, field, shape.items)
        return None if item is None else [item]
    return _sample_single(document, field, resolved)


def _sample_single(document: OpenApi, field: FieldDescriptor, schema: Any) -> Any:
    message = field.message_type
    if message is not None and message.full_name in (STRUCT, VALUE):
        return {"sample": field.name}
    if message is not None and message.full_name == TIMESTAMP:
        return None
    if message is not None:
        nested = REGISTRY.codec(message).cls()
        _fill(document, nested, schema)
        return nested
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    bounds = _bounds(document, schema)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return not bounds.get("default", False)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        low, high = bounds.get("minimum", 0), bounds.get("maximum", 10)
        return (low + high) / 2
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
        low, high = bounds.get("minimum", 1), bounds.get("maximum", 99)
        return int((low + high) // 2)
    return _text(field.name, bounds)


def _bounds(document: OpenApi, schema: Any) -> dict[str, Any]:
    schema = document.resolve(schema)
    for variant in schema.get("anyOf", ()):
        variant = document.resolve(variant)
        if variant.get("type") != "null":
            return dict(variant)
    return dict(schema)


def _text(name: str, bounds: Mapping[str, Any]) -> str:
    kind = bounds.get("format", "")
    if kind == "uri":
        return f"https://hooks.example.com/{name}"
    if kind == "email":
        return f"{name}.{datetime.now(UTC).timestamp():.0f}@example.com"
    text = f"sample {name}"
    return text[: bounds.get("maxLength", len(text))].ljust(bounds.get("minLength", 1), "x")


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        target = getattr(message, field.name)
        for item in value:
            if isinstance(item, Message):
                target.add().CopyFrom(item)
            elif isinstance(item, dict):
                target.add().update(item)
            else:
                target.append(item)
    elif isinstance(value, Message):
        getattr(message, field.name).CopyFrom(value)
    elif isinstance(value, dict):
        getattr(message, field.name).update(value)
    else:
        setattr(message, field.name, value)


def _set_known(request: Message, path: tuple[str, ...]) -> None:
    target = request
    for part in path[:-1]:
        target = getattr(target, part)
    setattr(target, path[-1], KNOWN.get(path[-1], "sample"))


# --------------------------------------------------------------------------- down


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("route", DOWN, ids=lambda r: r.full_method.rpartition(".")[2])
async def test_every_answered_member_reaches_the_caller(world: World, route: Route) -> None:
    request = route.request_codec.cls()
    await _fill_path(world, route, request)
    operation = world.document.operations[path_key(route.http_method, route.template)]
    for parameter in operation.parameters:  # what the service requires to answer at all
        if parameter.where == "query" and parameter.required:
            setattr(request, parameter.name, "sample")
    target = route.build(request, {}).target("")
    raw = await world.direct("GET", target)
    message = await world.call(route, request)
    again = await world.direct("GET", target)
    ours = _encoded(route.response_codec, message)
    if isinstance(raw, list):  # a bare list: the gateway's page of it
        raw, again = {route.list_field: raw}, {route.list_field: again}
    # members that differ from one call to the next (a timing) are checked for presence
    missing = _compare(_steady(raw, again), ours, route.response_codec, "answer")
    assert not missing, f"{route.full_method}: {missing}"


def _encoded(codec: MessageCodec, message: Message) -> dict[str, Any]:
    return codec.encode(message)


class _Varies:
    """A member whose value changes between two identical requests: only its presence is
    compared."""

    def __repr__(self) -> str:
        return "<varies>"


def _steady(one: Any, two: Any) -> Any:
    if isinstance(one, dict) and isinstance(two, dict):
        return {k: _steady(v, two.get(k)) for k, v in one.items()}
    if isinstance(one, list) and isinstance(two, list) and len(one) == len(two):
        return [_steady(a, b) for a, b in zip(one, two, strict=True)]
    return one if one == two else _Varies()


def _compare(raw: Any, ours: Any, codec: MessageCodec | None, where: str) -> list[str]:
    """Members of ``raw`` (not null) missing from ``ours`` or carried with another value."""
    if raw is None or raw == {} or raw == []:
        return []
    if isinstance(raw, dict):
        if codec is None:  # a free-form object (Struct): compared as it is
            return [] if _same(ours, raw) else [f"{where}: {ours!r} != {raw!r}"]
        problems: list[str] = []
        for key, value in raw.items():
            field = _field_for(codec.descriptor, key, value)
            if value is None or field is None:
                if value is not None:
                    problems.append(f"{where}.{key}: no field carries it")
                continue
            if not isinstance(ours, dict) or field.name not in ours:
                if not _is_default(value):
                    problems.append(f"{where}.{key}: not in the message")
                continue
            if field.enum_type is not None:
                enum = REGISTRY.enum(field.enum_type)
                if enum.decode(value) != enum.decode(ours[field.name]):
                    problems.append(f"{where}.{key}: {ours[field.name]!r} != {value!r}")
                continue
            nested = (
                REGISTRY.codec(field.message_type)
                if field.message_type is not None
                and field.message_type.full_name not in (STRUCT, VALUE, TIMESTAMP)
                and not field.message_type.GetOptions().map_entry
                else None
            )
            problems += _compare(value, ours[field.name], nested, f"{where}.{key}")
        return problems
    if isinstance(raw, list):
        if not isinstance(ours, list) or len(ours) != len(raw):
            return [f"{where}: {len(ours) if isinstance(ours, list) else ours!r} != {len(raw)}"]
        return [
            problem
            for index, (one, mine) in enumerate(zip(raw, ours, strict=True))
            for problem in _compare(one, mine, codec, f"{where}[{index}]")
        ]
    if isinstance(raw, _Varies):
        return []  # present (ours has the field), value of the moment
    return [] if _same(ours, raw) else [f"{where}: {ours!r} != {raw!r}"]


def _field_for(message: Descriptor, key: str, value: Any) -> FieldDescriptor | None:
    candidates = [f for f in message.fields if key in _names(f)]
    if len(candidates) > 1:  # a name two fields answer to: the one of the value's shape
        first = value[0] if isinstance(value, list) and value else value
        wanted = isinstance(first, dict)
        candidates = [f for f in candidates if (f.message_type is not None) == wanted]
    return candidates[0] if candidates else None


def _names(field: FieldDescriptor) -> tuple[str, ...]:
    return (field.name, *field_rule(field).aliases)


def _output_only(field: FieldDescriptor) -> bool:
    from google.api import field_behavior_pb2

    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.OUTPUT_ONLY in behaviors


def _is_default(value: Any) -> bool:
    return value in (0, 0.0, False, "", [], {})


def _same(ours: Any, raw: Any) -> bool:
    """Equal as JSON values, times compared as instants and numbers as numbers."""
    if isinstance(raw, str) and isinstance(ours, str) and raw != ours:
        return _instant(raw) is not None and _instant(raw) == _instant(ours)
    if isinstance(raw, int | float) and isinstance(ours, int | float):
        return float(raw) == float(ours)
    if isinstance(raw, dict) and isinstance(ours, dict):
        keys = {k for k, v in raw.items() if v is not None}
        return all(k in ours and _same(ours[k], raw[k]) for k in keys)
    if isinstance(raw, list) and isinstance(ours, list):
        return len(raw) == len(ours) and all(_same(o, r) for o, r in zip(ours, raw, strict=True))
    return bool(ours == raw)


def _instant(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --------------------------------------------------------------------------- resources


async def _fill_path(world: World, route: Route, request: Message) -> None:
    """Give every path variable an id of a resource made for it, directly upstream."""
    for segment in route.segments:
        if isinstance(segment, str):
            continue
        name = segment.field_path[-1]
        setattr(request, name, await _resource(world, name))


async def _resource(world: World, name: str) -> str:
    stamp = f"{datetime.now(UTC).timestamp():.6f}"
    if name == "agent_id":
        agent = await world.direct("POST", "/v1/agents", {"name": f"agent {stamp}"})
        return str(agent["id"])
    if name == "workflow_id":
        flow = await world.direct("POST", "/v1/workflows", {"name": f"flow {stamp}"})
        return str(flow["id"])
    if name == "webhook_id":
        hook = {"url": "https://hooks.example.com/x", "events": ["agent.created"]}
        return str((await world.direct("POST", "/v1/webhooks", hook))["id"])
    if name == "role_id":
        role = {"name": f"role {stamp}"[:50], "permissions": []}
        return str((await world.direct("POST", "/v1/access/roles", role))["id"])
    if name == "member_id":
        invite = {"email": f"m{stamp}@example.com", "role_id": "viewer"}
        return str((await world.direct("POST", "/v1/access/team/members", invite))["id"])
    if name == "key_id":
        return str((await world.direct("POST", "/v1/auth/api-keys", {"name": "k"}))["id"])
    if name == "execution_id":
        agent_id = await _resource(world, "agent_id")
        await world.direct("POST", f"/v1/agents/{agent_id}/run", {"message": "2 + 2"})
        executions = await world.direct("GET", "/v1/executions?limit=100")
        return str(executions["data"][-1]["id"])
    raise AssertionError(f"no resource for path variable {name}")
