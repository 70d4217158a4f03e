"""Compiling google.api.http rules and building requests from messages."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from gagiteck.v1 import agent_pb2, execution_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf.descriptor import ServiceDescriptor

from gateway.errors import InvalidRequest
from gateway.server.descriptors import contract_services
from gateway.transcoding.codec import CodecRegistry
from gateway.transcoding.routes import RouteTable, compile_route
from gateway.transcoding.templates import MAX_SEGMENT_LENGTH, RouteError

FieldProto = descriptor_pb2.FieldDescriptorProto
TABLE = RouteTable.compile(contract_services())


def route(name: str) -> Any:
    return TABLE[name]


def test_every_contract_rpc_is_compiled() -> None:
    assert len(TABLE) == sum(len(s.methods) for s in contract_services())
    assert len(TABLE) >= 36


def test_get_with_path_variable() -> None:
    r = route("/gagiteck.v1.AgentService/GetAgent")
    built = r.build(agent_pb2.GetAgentRequest(agent_id="agent_1"), {})
    assert (built.method, built.path, built.query, built.body) == (
        "GET",
        "/v1/agents/agent_1",
        None,
        None,
    )
    assert r.route_template == "GET /v1/agents/{agent_id}"


def test_list_sends_only_set_query_fields_and_enums_lower_case() -> None:
    r = route("/gagiteck.v1.ExecutionService/ListExecutions")
    built = r.build(
        execution_pb2.ListExecutionsRequest(limit=5, status=execution_pb2.EXECUTION_STATUS_RUNNING),
        {},
    )
    assert sorted(built.query or []) == [("limit", "5"), ("status", "running")]
    assert r.build(execution_pb2.ListExecutionsRequest(), {}).query == []


def test_body_star_excludes_path_fields() -> None:
    r = route("/gagiteck.v1.AgentService/RunAgent")
    request = agent_pb2.RunAgentRequest(agent_id="agent_1", message="hi")
    request.context.update({"user_id": "u1"})
    built = r.build(request, {})
    assert built.path == "/v1/agents/agent_1/run"
    assert built.body is not None
    assert orjson.loads(built.body) == {"message": "hi", "context": {"user_id": "u1"}}


def test_update_sends_only_masked_fields_and_not_the_mask() -> None:
    r = route("/gagiteck.v1.AgentService/UpdateAgent")
    request = agent_pb2.UpdateAgentRequest(
        agent_id="agent_1",
        agent=agent_pb2.Agent(name="new", system_prompt="ignored"),
    )
    request.update_mask.paths.extend(["name", "config.temperature"])
    built = r.build(request, {})
    assert built.method == "PATCH"
    assert built.query is None
    assert built.body is not None
    assert orjson.loads(built.body) == {"name": "new", "config": {"temperature": None}}


def test_update_without_mask_sends_populated_fields() -> None:
    r = route("/gagiteck.v1.AgentService/UpdateAgent")
    request = agent_pb2.UpdateAgentRequest(agent_id="a", agent=agent_pb2.Agent(name="x"))
    assert r.build(request, {}).body == b'{"name":"x"}'


def test_update_with_unknown_mask_path_is_invalid() -> None:
    r = route("/gagiteck.v1.AgentService/UpdateAgent")
    request = agent_pb2.UpdateAgentRequest(agent_id="a")
    request.update_mask.paths.append("colour")
    with pytest.raises(InvalidRequest) as caught:
        r.build(request, {})
    assert caught.value.violations[0].field == "update_mask"


@pytest.mark.parametrize(
    "bad",
    [
        "../admin",
        "a/b",
        "a?x=1",
        "%2e%2e",
        "",
        "x" * 10_000,
        ".",
        "..",
        "a#b",
        "a b",
        "a\nb",
        "a\\b",
        "\x00",
    ],
    ids=[
        "dotdot-admin",
        "slash",
        "query",
        "encoded-dots",
        "empty",
        "10k",
        "dot",
        "dotdot",
        "fragment",
        "space",
        "newline",
        "backslash",
        "nul",
    ],
)
def test_bad_path_variables_are_refused(bad: str) -> None:
    r = route("/gagiteck.v1.AgentService/GetAgent")
    with pytest.raises(InvalidRequest) as caught:
        r.build(agent_pb2.GetAgentRequest(agent_id=bad), {})
    assert caught.value.violations[0].field == "agent_id"


def test_odd_but_safe_ids_are_percent_encoded() -> None:
    r = route("/gagiteck.v1.AgentService/GetAgent")
    assert r.build(agent_pb2.GetAgentRequest(agent_id="a:b@c"), {}).path == "/v1/agents/a%3Ab%40c"
    assert r.build(agent_pb2.GetAgentRequest(agent_id="é"), {}).path == "/v1/agents/%C3%A9"
    longest = "x" * MAX_SEGMENT_LENGTH
    assert r.build(agent_pb2.GetAgentRequest(agent_id=longest), {}).path.endswith(longest)


def test_test_only_proto_rules(echo_service: ServiceDescriptor) -> None:
    table = RouteTable.compile([echo_service])
    get = table["/testonly.v1.EchoService/GetThing"]
    cls = get.request_codec.cls
    request: Any = cls(shelf=7, thing_id="t1", filter="f", tags=["a", "b"], exact=True, colour=1)
    request.paging.size = 10
    built = get.build(request, {})
    assert built.path == "/v2/shelves/7/things/t1"
    assert sorted(built.query or []) == sorted(
        [
            ("filter", "f"),
            ("tags", "a"),
            ("tags", "b"),
            ("exact", "true"),
            ("colour", "dark_red"),
            ("paging.size", "10"),
        ]
    )
    archive = table["/testonly.v1.EchoService/ArchiveThing"]
    built = archive.build(
        archive.request_codec.cls(thing_id="t1", note={"text": "x"}, actor="me"), {}
    )
    assert (built.path, built.query, built.body) == (
        "/v2/things/t1:archive",
        [("actor", "me")],
        b'{"text":"x"}',
    )
    patch = table["/testonly.v1.EchoService/PatchThing"]
    request = patch.request_codec.cls(thing={"id": "t/1", "name": "n"})
    with pytest.raises(InvalidRequest):
        patch.build(request, {})


def _service(rule_text: str) -> ServiceDescriptor:
    """A one-method service built in a private pool, to feed bad rules to the compiler."""
    pool = descriptor_pool.DescriptorPool()
    for dep in (descriptor_pb2, http_pb2, annotations_pb2):
        pool.AddSerializedFile(dep.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="bad.proto",
        package="bad",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    message = file.message_type.add(name="Req")
    message.field.add(
        name="id", number=1, type=FieldProto.TYPE_STRING, label=FieldProto.LABEL_OPTIONAL
    )
    message.field.add(
        name="ids", number=2, type=FieldProto.TYPE_STRING, label=FieldProto.LABEL_REPEATED
    )
    method = file.service.add(name="Bad").method.add(
        name="Do", input_type=".bad.Req", output_type=".bad.Req"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        text_format.Parse(rule_text, http_pb2.HttpRule())
    )
    pool.Add(file)
    return pool.FindServiceByName("bad.Bad")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('get: "/v1/things/{nope}"', "names no field"),
        ('get: "/v1/things/{id=**}"', "multi-segment"),
        ('get: "/v1/things/{ids}"', "repeated"),
        ('get: "v1/things"', "must start with '/'"),
        ('post: "/v1/things" body: "missing"', "is not a field"),
        ('get: "/v1/things" body: "*"', "cannot carry a body"),
        ('get: "/v1/{id}/{id}"', "appears twice"),
        ('custom { kind: "HEAD" path: "/v1" }', "not supported"),
        ('get: "/v1/things" response_body: "nope"', "response_body"),
        ('get: "/v1/a" additional_bindings { get: "/v1/b" }', "additional_bindings"),
    ],
)
def test_bad_rules_stop_start_up(rule: str, problem: str) -> None:
    service = _service(rule)
    with pytest.raises(RouteError, match=problem) as caught:
        compile_route(service.methods[0], CodecRegistry())
    assert "bad.Bad.Do" in str(caught.value)
