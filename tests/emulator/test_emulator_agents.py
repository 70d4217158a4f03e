"""AgentService CRUD, body validation and error bodies."""

from __future__ import annotations

import re

import aiohttp
import pytest

from gateway.emulator import EmulatorConfig, running_emulator

from .emulator_testkit import Api

NAIVE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
AGENT = {
    "name": "Customer Support Bot",
    "system_prompt": "You are a helpful customer support agent for Acme Corp.",
    "config": {"model": "claude-3-opus", "max_tokens": 4096, "temperature": 0.7},
    "tools": ["knowledge_base", "ticket_system"],
    "metadata": {"department": "support", "priority": "high"},
}


@pytest.mark.asyncio
async def test_create_answers_the_full_agent(api: Api) -> None:
    reply = await api.post("/v1/agents", {**AGENT, "unknown_field": "ignored"})
    assert reply.status == 201
    agent = reply.body
    assert set(agent) == {
        "id",
        "name",
        "system_prompt",
        "config",
        "tools",
        "metadata",
        "status",
        "created_at",
        "updated_at",
    }
    assert re.fullmatch(r"agent_[0-9a-f]+", agent["id"])
    assert agent["config"] == AGENT["config"]
    assert agent["status"] == "active"
    assert NAIVE.match(agent["created_at"])
    assert (await api.get(f"/v1/agents/{agent['id']}")).body == agent


@pytest.mark.asyncio
async def test_patch_changes_only_what_is_sent_and_merges_config(api: Api) -> None:
    agent = (await api.post("/v1/agents", AGENT)).body
    reply = await api.patch(
        f"/v1/agents/{agent['id']}",
        {
            "name": "Renamed",
            "config": {"temperature": 0.2, "max_tokens": None},
            "metadata": {"k": 1},
        },
    )
    assert reply.status == 200
    updated = reply.body
    assert updated["name"] == "Renamed"
    assert updated["config"] == {"model": "claude-3-opus", "temperature": 0.2}
    assert updated["metadata"] == {"k": 1}
    assert updated["system_prompt"] == AGENT["system_prompt"]
    assert updated["tools"] == AGENT["tools"]
    assert updated["updated_at"] >= agent["updated_at"]
    assert updated["created_at"] == agent["created_at"]


@pytest.mark.asyncio
async def test_delete_answers_204_then_404(api: Api) -> None:
    agent = (await api.post("/v1/agents", AGENT)).body
    deleted = await api.delete(f"/v1/agents/{agent['id']}")
    assert deleted.status == 204
    assert deleted.raw == b""
    missing = await api.get(f"/v1/agents/{agent['id']}")
    assert missing.status == 404
    assert missing.body == {
        "detail": f"Agent {agent['id']} not found",
        "code": "NOT_FOUND",
        "status": 404,
    }


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "name"], "missing"),
        ({"name": 5}, ["body", "name"], "string_type"),
        ({"name": "a", "status": "paused"}, ["body", "status"], "literal_error"),
        ({"name": "a", "tools": "calculator"}, ["body", "tools"], "list_type"),
        (
            {"name": "a", "config": {"temperature": "hot"}},
            ["body", "config", "temperature"],
            "float_parsing",
        ),
        (
            {"name": "a", "config": {"max_tokens": 0}},
            ["body", "config", "max_tokens"],
            "greater_than_equal",
        ),
        ({"name": "a", "metadata": []}, ["body", "metadata"], "dict_type"),
        (["not", "an", "object"], ["body"], "model_attributes_type"),
    ],
    ids=["missing", "type", "status", "tools", "temperature", "max-tokens", "metadata", "array"],
)
@pytest.mark.asyncio
async def test_invalid_bodies_answer_fastapi_422(
    api: Api, body: object, loc: list[str], kind: str
) -> None:
    reply = await api.post("/v1/agents", body)
    assert reply.status == 422
    assert reply.body["detail"][0]["loc"] == loc
    assert reply.body["detail"][0]["type"] == kind
    assert isinstance(reply.body["detail"][0]["msg"], str)


@pytest.mark.asyncio
async def test_malformed_json_is_json_invalid(api: Api) -> None:
    reply = await api.post(
        "/v1/agents", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert reply.status == 422
    issue = reply.body["detail"][0]
    assert issue["type"] == "json_invalid"
    assert issue["loc"][0] == "body"
    assert issue["msg"] == "JSON decode error"


@pytest.mark.asyncio
async def test_missing_body_is_field_required(api: Api) -> None:
    reply = await api.post("/v1/agents")
    assert reply.status == 422
    assert reply.body["detail"] == [
        {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
    ]


@pytest.mark.asyncio
async def test_patch_validates_before_looking_up(api: Api) -> None:
    assert (await api.patch("/v1/agents/agent_nope", {"name": 1})).status == 422
    assert (await api.patch("/v1/agents/agent_nope", {"name": "x"})).status == 404


@pytest.mark.asyncio
async def test_unknown_route_and_method_use_the_documented_body(api: Api) -> None:
    missing = await api.get("/v1/nothing-here")
    assert missing.status == 404
    assert missing.body == {"detail": "Not Found", "code": "NOT_FOUND", "status": 404}
    wrong = await api.call("PUT", "/v1/agents")
    assert wrong.status == 405
    assert wrong.body["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.asyncio
async def test_timestamps_can_carry_a_z() -> None:
    config = EmulatorConfig(open_mode=True, timestamp_style="z")
    async with (
        running_emulator(config) as running,
        aiohttp.ClientSession() as session,
        session.post(running.url + "/v1/agents", json={"name": "z"}) as response,
    ):
        agent = await response.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", agent["created_at"])
