"""The contract's options for the two forms of the REST API, as the codec, the routes and
the answer reader apply them: aliases, shapes, enum aliases, extra query parameters,
paging by the gateway, whole objects and ignored updates."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from gagiteck.v1 import (
    access_pb2,
    agent_pb2,
    execution_pb2,
    search_pb2,
    webhook_pb2,
    workflow_pb2,
)
from google.protobuf import field_mask_pb2

from gateway.errors import UpstreamAnswer, UpstreamIgnored
from gateway.server.descriptors import contract_services
from gateway.transcoding.codec import CodecRegistry
from gateway.transcoding.decode import decode_answer
from gateway.transcoding.routes import RouteTable

REGISTRY = CodecRegistry()
TABLE = RouteTable.compile(contract_services(), REGISTRY)


def route(name: str):  # type: ignore[no-untyped-def]
    return TABLE[f"/gagiteck.v1.{name}"]


def answer(body: object, status: int = 200) -> UpstreamAnswer:
    return UpstreamAnswer(status, {}, orjson.dumps(body), "application/json", "api.example")


# --------------------------------------------------------------------------- aliases


def test_an_alias_is_read_in_answers() -> None:
    webhook: Any = REGISTRY.codec(webhook_pb2.Webhook.DESCRIPTOR).decode(
        {"id": "w", "is_active": False}
    )
    assert webhook.HasField("active")
    assert webhook.active is False
    execution: Any = REGISTRY.codec(execution_pb2.Execution.DESCRIPTOR).decode(
        {"inputs": {"topic": "x"}, "outputs": {"n": 1}, "workflow_id": "wf_1"}
    )
    assert execution.input["topic"] == "x"
    assert execution.result.struct_value["n"] == 1
    assert execution.workflow_id == "wf_1"


def test_an_aliased_field_is_written_under_both_names() -> None:
    trigger = route("WorkflowService/TriggerWorkflow")
    request = workflow_pb2.TriggerWorkflowRequest(workflow_id="wf_1")
    request.input.update({"topic": "x"})
    body = orjson.loads(trigger.build(request, {}).body or b"")
    assert body == {"input": {"topic": "x"}, "inputs": {"topic": "x"}}


def test_a_masked_alias_is_written_under_both_names() -> None:
    update = route("WebhookService/UpdateWebhook")
    request = webhook_pb2.UpdateWebhookRequest(
        webhook_id="w", webhook=webhook_pb2.Webhook(active=False)
    )
    request.update_mask.paths.append("active")
    assert orjson.loads(update.build(request, {}).body or b"") == {
        "active": False,
        "is_active": False,
    }


def test_a_json_name_two_fields_answer_to_goes_by_the_shape_of_the_value() -> None:
    """`permissions` is Role.permissions (names) and Role.grants' alias (objects)."""
    codec = REGISTRY.codec(access_pb2.Role.DESCRIPTOR)
    names: Any = codec.decode({"permissions": ["agents:read"]})
    assert list(names.permissions) == ["agents:read"]
    assert not names.grants
    grants: Any = codec.decode({"permissions": [{"resource": "agents", "actions": ["read"]}]})
    assert not grants.permissions
    assert [(g.resource, list(g.actions)) for g in grants.grants] == [("agents", ["read"])]
    odd: Any = codec.decode({"permissions": [["odd"]]})
    assert not odd.grants


def test_an_enum_value_alias_is_read() -> None:
    member: Any = REGISTRY.codec(access_pb2.TeamMember.DESCRIPTOR).decode({"status": "pending"})
    assert member.status == access_pb2.MEMBER_STATUS_INVITED


def test_search_hits_under_results() -> None:
    search = route("SearchService/Search")
    request = search_pb2.SearchRequest(q="x", limit=5)
    body = {"query": "x", "results": [{"id": "a", "score": 1.5}], "total": 1, "took_ms": 0.4}
    response: Any = decode_answer(search, answer(body), request)
    assert [hit.id for hit in response.data] == ["a"]
    assert (response.query, response.took_ms, response.total) == ("x", 0.4, 1)


# --------------------------------------------------------------------------- also_query


def test_a_field_also_sent_in_the_query() -> None:
    update = route("AccessService/UpdateTeamMember")
    request = access_pb2.UpdateTeamMemberRequest(
        member_id="m1", member=access_pb2.TeamMember(role_id="developer")
    )
    request.update_mask.paths.append("role_id")
    built = update.build(request, {})
    assert built.query == [("role_id", "developer")]
    assert orjson.loads(built.body or b"") == {"role_id": "developer"}
    assert update.build(access_pb2.UpdateTeamMemberRequest(member_id="m1"), {}).query == []


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("limit", "offset", "ids", "total"),
    [(0, 0, list(range(20)), 25), (10, 20, [20, 21, 22, 23, 24], 25), (5, 30, [], 25)],
)
def test_a_list_the_upstream_did_not_page_is_paged(
    limit: int, offset: int, ids: list[int], total: int
) -> None:
    keys = route("AuthService/ListApiKeys")
    every = [{"id": str(n), "name": f"k{n}"} for n in range(25)]
    from gagiteck.v1 import auth_pb2

    response: Any = decode_answer(
        keys, answer(every), auth_pb2.ListApiKeysRequest(limit=limit, offset=offset)
    )
    assert [int(k.id) for k in response.data] == ids
    assert (response.total, response.limit, response.offset) == (total, limit or 20, offset)


def test_an_object_without_paging_counts_is_paged_and_keeps_its_total() -> None:
    hooks = route("WebhookService/ListWebhooks")
    body = {"data": [{"id": str(n)} for n in range(3)], "total": 3}
    response: Any = decode_answer(hooks, answer(body), webhook_pb2.ListWebhooksRequest(offset=1))
    assert [w.id for w in response.data] == ["1", "2"]
    assert (response.total, response.limit, response.offset) == (3, 20, 1)


def test_a_list_the_upstream_paged_is_left_alone() -> None:
    agents = route("AgentService/ListAgents")
    body = {"data": [{"id": "a"}], "total": 41, "limit": 1, "offset": 40}
    response: Any = decode_answer(
        agents, answer(body), agent_pb2.ListAgentsRequest(limit=1, offset=40)
    )
    assert (len(response.data), response.total, response.limit, response.offset) == (1, 41, 1, 40)


def test_logs_under_their_deployed_name_are_paged() -> None:
    logs = route("ExecutionService/GetExecutionLogs")
    body = {"execution_id": "e1", "logs": [{"message": "a"}, {"message": "b"}]}
    response: Any = decode_answer(
        logs, answer(body), execution_pb2.GetExecutionLogsRequest(limit=1)
    )
    assert [entry.message for entry in response.data] == ["a"]
    assert (response.execution_id, response.total) == ("e1", 2)


# --------------------------------------------------------------------------- writes


def _update(paths: list[str], agent: agent_pb2.Agent) -> agent_pb2.UpdateAgentRequest:
    return agent_pb2.UpdateAgentRequest(
        agent_id="a1", agent=agent, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )


def test_a_mask_naming_part_of_a_whole_object_sends_it_whole() -> None:
    rule = route("AgentService/UpdateAgent").update
    assert rule is not None
    request = _update(
        ["name", "config.temperature"],
        agent_pb2.Agent(name="n", config=agent_pb2.AgentConfig(temperature=0.2)),
    )
    assert rule.needs_current(request)
    current = agent_pb2.Agent(
        name="old", config=agent_pb2.AgentConfig(model="m", temperature=0.9, max_tokens=77)
    )
    completed = rule.completed(request, current)
    assert list(completed.update_mask.paths) == ["name", "config"]
    assert completed.agent.config == agent_pb2.AgentConfig(
        model="m", temperature=0.2, max_tokens=77
    )
    assert completed.agent.name == "n"
    assert request.agent.config.model == ""  # the caller's request is not changed
    assert not rule.needs_current(_update(["config"], agent_pb2.Agent()))
    assert not rule.needs_current(_update([], agent_pb2.Agent()))


def test_an_update_whose_answer_did_not_apply_the_status_is_refused() -> None:
    rule = route("AgentService/UpdateAgent").update
    assert rule is not None
    request = _update(["status"], agent_pb2.Agent(status=agent_pb2.AGENT_STATUS_INACTIVE))
    unchanged = agent_pb2.Agent(status=agent_pb2.AGENT_STATUS_ACTIVE)
    with pytest.raises(UpstreamIgnored) as caught:
        rule.check_applied(request, unchanged, "api.example", "PATCH /v1/agents/{agent_id}")
    assert caught.value.error_metadata()["field"] == "status"
    rule.check_applied(request, agent_pb2.Agent(status=agent_pb2.AGENT_STATUS_INACTIVE), "h", "r")
    rule.check_applied(_update(["name"], agent_pb2.Agent(name="x")), unchanged, "h", "r")


def test_creates_are_not_checked() -> None:
    """A create answers the resource it made; the caller sees its status."""
    rule = route("AgentService/CreateAgent").update
    assert rule is None or not rule.checked
