"""The tolerant JSON codec, checked against json_format where their semantics meet."""

from __future__ import annotations

from typing import Any

import pytest
from gagiteck.v1 import agent_pb2, execution_pb2, workflow_pb2
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transcoding.codec import CodecRegistry, mask_tree
from gateway.transcoding.json_values import format_timestamp, parse_timestamp

REGISTRY = CodecRegistry()
AGENT = REGISTRY.codec(agent_pb2.Agent.DESCRIPTOR)
EXECUTION = REGISTRY.codec(execution_pb2.Execution.DESCRIPTOR)


def execution(payload: Any) -> execution_pb2.Execution:
    decoded = EXECUTION.decode(payload)
    assert isinstance(decoded, execution_pb2.Execution)
    return decoded


def test_reads_drifted_agent_payload() -> None:
    payload = {
        "id": "agent_1",
        "name": "Research",
        "system_prompt": None,
        "config": {"model": "claude-3-sonnet", "max_tokens": "4096", "temperature": "0.7"},
        "tools": ["web_search", None, "calculator"],
        "metadata": {"department": "support", "n": 3, "nested": {"a": [1, None]}},
        "status": "active",
        "created_at": "2024-01-15T10:30:00.123456",
        "updated_at": "2024-01-15T10:30:00Z",
        "brand_new_field": {"whatever": True},
    }
    agent = AGENT.decode(payload)
    assert isinstance(agent, agent_pb2.Agent)
    assert agent.name == "Research"
    assert agent.system_prompt == ""
    assert agent.config.max_tokens == 4096
    assert agent.config.temperature == pytest.approx(0.7)
    assert not agent.config.HasField("max_iterations")
    assert list(agent.tools) == ["web_search", "calculator"]
    assert agent.metadata["department"] == "support"
    assert agent.status == agent_pb2.AGENT_STATUS_ACTIVE
    assert agent.created_at.seconds == 1705314600
    assert agent.created_at.nanos == 123456000
    assert agent.updated_at.seconds == 1705314600


@pytest.mark.parametrize(
    ("text", "seconds", "nanos"),
    [
        ("2024-01-15T10:30:00", 1705314600, 0),
        ("2024-01-15T10:30:00.5", 1705314600, 500_000_000),
        ("2024-01-15T10:30:00.123456789Z", 1705314600, 123_456_789),
        ("2024-01-15T12:30:00+02:00", 1705314600, 0),
        ("2024-01-15 10:30:00", 1705314600, 0),
        (1705314600, 1705314600, 0),
        (1705314600.25, 1705314600, 250_000_000),
    ],
    ids=["naive", "fraction", "nanos-z", "offset", "space", "unix", "unix-float"],
)
def test_timestamps(text: Any, seconds: int, nanos: int) -> None:
    ts = parse_timestamp(text)
    assert ts is not None
    assert (ts.seconds, ts.nanos) == (seconds, nanos)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-45T00:00:00", True, None, [1]])
def test_bad_timestamps_are_dropped(text: Any) -> None:
    assert parse_timestamp(text) is None
    assert execution({"started_at": text}).HasField("started_at") is False


def test_unknown_enum_reads_as_unspecified_and_case_is_ignored() -> None:
    assert execution({"status": "exploded"}).status == 0
    running = execution_pb2.EXECUTION_STATUS_RUNNING
    assert execution({"status": "RUNNING"}).status == running
    assert execution({"status": "EXECUTION_STATUS_RUNNING"}).status == running


def test_wrong_shapes_are_dropped_not_fatal() -> None:
    decoded = execution(
        {"id": 42, "input": "not an object", "step_results": {"x": 1}, "result": {"a": 1}}
    )
    assert decoded.id == "42"
    assert not decoded.HasField("input")
    assert len(decoded.step_results) == 0
    assert decoded.result.struct_value["a"] == 1


def test_out_of_range_integers_are_dropped() -> None:
    config = REGISTRY.codec(agent_pb2.AgentConfig.DESCRIPTOR).decode({"max_tokens": 2**40})
    assert not config.HasField("max_tokens")


def test_non_object_payload_gives_default_message() -> None:
    assert AGENT.decode([1, 2]) == agent_pb2.Agent()
    assert AGENT.decode(None) == agent_pb2.Agent()


def test_encode_uses_rest_conventions() -> None:
    agent = agent_pb2.Agent(
        name="n",
        config=agent_pb2.AgentConfig(temperature=0.5, max_tokens=0),
        status=agent_pb2.AGENT_STATUS_ARCHIVED,
        created_at=timestamp_pb2.Timestamp(seconds=1705314600, nanos=120_000_000),
    )
    agent.metadata.update({"a": 1, "b": [True, None, "x"]})
    assert AGENT.encode(agent) == {
        "name": "n",
        "config": {"temperature": 0.5, "max_tokens": 0},
        "status": "archived",
        "created_at": "2024-01-15T10:30:00.12Z",
        "metadata": {"a": 1, "b": [True, None, "x"]},
    }


def test_masked_encoding_sends_defaults_and_nulls() -> None:
    agent = agent_pb2.Agent(name="", config=agent_pb2.AgentConfig(temperature=0.0))
    tree = mask_tree(agent_pb2.Agent.DESCRIPTOR, ["name", "config.temperature", "config.model"])
    assert not isinstance(tree, str)
    assert AGENT.encode_masked(agent, tree) == {
        "name": "",
        "config": {"temperature": 0.0, "model": None},
    }


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["config", "config.model"], {"config": None}),
        (["config.model", "config"], {"config": None}),
        (["tools", "name"], {"tools": None, "name": None}),
        (["nope"], "nope"),
        (["name.first"], "name.first"),
        (["metadata.key"], "metadata.key"),
    ],
)
def test_mask_tree(paths: list[str], expected: object) -> None:
    assert mask_tree(agent_pb2.Agent.DESCRIPTOR, paths) == expected


def test_format_timestamp() -> None:
    assert format_timestamp(timestamp_pb2.Timestamp(seconds=0)) == "1970-01-01T00:00:00Z"
    ts = timestamp_pb2.Timestamp(seconds=1, nanos=5)
    assert format_timestamp(ts) == "1970-01-01T00:00:01.000000005Z"


# -- equivalence with json_format on generated messages

_text = st.text(max_size=20)
_json_scalar = st.one_of(st.none(), st.booleans(), _text, st.integers(-(2**50), 2**50).map(float))
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
_ts = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(0, 253402300799),
    nanos=st.integers(0, 999_999_999),
)


@st.composite
def agents(draw: st.DrawFn) -> agent_pb2.Agent:
    agent = agent_pb2.Agent(
        id=draw(_text),
        name=draw(_text),
        system_prompt=draw(_text),
        tools=draw(st.lists(_text, max_size=3)),
        status=draw(st.sampled_from(list(agent_pb2.AgentStatus.values()))),
        created_at=draw(_ts),
    )
    if draw(st.booleans()):
        agent.config.temperature = draw(st.floats(-2, 2, allow_nan=False))
    if draw(st.booleans()):
        agent.config.max_tokens = draw(st.integers(0, 2**31 - 1))
    agent.metadata.update(draw(st.dictionaries(_text, _json, max_size=3)))
    return agent


@settings(max_examples=200, deadline=None)
@given(agents())
def test_decode_matches_json_format(agent: agent_pb2.Agent) -> None:
    as_json = json_format.MessageToDict(agent, preserving_proto_field_name=True)
    assert AGENT.decode(as_json) == agent
    assert AGENT.decode(as_json) == json_format.ParseDict(as_json, agent_pb2.Agent())


@settings(max_examples=200, deadline=None)
@given(agents())
def test_encode_round_trips(agent: agent_pb2.Agent) -> None:
    assert AGENT.decode(AGENT.encode(agent)) == agent


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_text, _json, max_size=4))
def test_struct_matches_json_format(value: dict[str, Any]) -> None:
    expected = struct_pb2.Struct()
    json_format.ParseDict(value, expected)
    workflow = REGISTRY.codec(workflow_pb2.Workflow.DESCRIPTOR).decode({"metadata": value})
    assert isinstance(workflow, workflow_pb2.Workflow)
    assert workflow.metadata == expected
