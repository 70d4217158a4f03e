"""Deployed dialect: agents (complete config, fixed status, no streaming) and the executions
their runs leave behind."""

from __future__ import annotations

import pytest

from gateway.emulator import RunningEmulator

from .deployed_testkit import assert_answer, detail
from .emulator_testkit import Api

DEFAULT_CONFIG = {
    "model": "claude-3-sonnet",
    "max_tokens": 4096,
    "temperature": 0.7,
    "max_iterations": 25,
    "timeout_ms": 120_000,
}


async def _agent(dapi: Api, **body: object) -> dict[str, object]:
    reply = await dapi.post("/v1/agents", {"name": "Research", **body})
    assert reply.status == 201, reply.body
    agent: dict[str, object] = assert_answer(reply, "POST", "/v1/agents")
    return agent


@pytest.mark.asyncio
async def test_create_fills_the_config_and_ignores_status(dapi: Api) -> None:
    agent = await _agent(dapi, status="archived", config={"model": "gpt-4"})
    assert agent["config"] == {**DEFAULT_CONFIG, "model": "gpt-4"}
    assert agent["status"] == "active"
    assert (agent["system_prompt"], agent["tools"], agent["metadata"]) == (None, [], {})
    assert agent["created_at"] == agent["updated_at"]
    bare = await _agent(dapi, config=None)
    assert bare["config"] == DEFAULT_CONFIG


@pytest.mark.asyncio
async def test_create_validates_like_pydantic(dapi: Api) -> None:
    reply = await dapi.post(
        "/v1/agents",
        {
            "name": "x" * 101,
            "config": {"max_tokens": 0, "temperature": 3, "timeout_ms": 5, "max_iterations": 1.5},
            "tools": [1],
            "metadata": None,
        },
    )
    assert reply.status == 422
    issues = {tuple(i["loc"]): i for i in reply.body["detail"]}
    assert issues[("body", "name")]["type"] == "string_too_long"
    assert issues[("body", "name")]["ctx"] == {"max_length": 100}
    assert issues[("body", "config", "temperature")]["ctx"] == {"le": 2.0}
    assert issues[("body", "config", "temperature")]["msg"] == (
        "Input should be less than or equal to 2"
    )
    assert issues[("body", "config", "timeout_ms")]["ctx"] == {"ge": 1000}
    assert issues[("body", "config", "max_iterations")]["type"] == "int_from_float"
    assert issues[("body", "tools", 0)]["type"] == "string_type"
    assert issues[("body", "metadata")]["type"] == "dict_type"
    not_an_object = await dapi.post("/v1/agents", {"name": "n", "config": "fast"})
    assert not_an_object.body["detail"][0]["type"] == "model_attributes_type"


@pytest.mark.asyncio
async def test_update_replaces_the_config_and_never_the_status(dapi: Api) -> None:
    agent = await _agent(dapi, config={"model": "gpt-4", "temperature": 1.5})
    reply = await dapi.patch(
        f"/v1/agents/{agent['id']}",
        {"config": {"temperature": 0.1}, "status": "archived", "name": None, "tools": ["x"]},
    )
    updated = assert_answer(reply, "PATCH", "/v1/agents/{agent_id}")
    assert updated["config"] == {**DEFAULT_CONFIG, "temperature": 0.1}
    assert (updated["status"], updated["name"], updated["tools"]) == ("active", "Research", ["x"])
    assert updated["updated_at"] > updated["created_at"]
    assert detail(await dapi.patch("/v1/agents/agent_nope", {}), 404) == "Agent not found"
    invalid = await dapi.patch("/v1/agents/agent_nope", {"config": {"temperature": 9}})
    assert invalid.status == 422  # the body is checked before the agent is looked up


@pytest.mark.asyncio
async def test_list_is_oldest_first_with_paging(dapi: Api) -> None:
    names = ["a", "b", "c"]
    for name in names:
        await dapi.post("/v1/agents", {"name": name})
    reply = await dapi.get("/v1/agents?limit=2&offset=1")
    page = assert_answer(reply, "GET", "/v1/agents")
    assert [a["name"] for a in page["data"]] == ["b", "c"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    bad = await dapi.get("/v1/agents?limit=0&offset=-1")
    assert [(i["type"], i["loc"]) for i in bad.body["detail"]] == [
        ("greater_than_equal", ["query", "limit"]),
        ("greater_than_equal", ["query", "offset"]),
    ]


@pytest.mark.asyncio
async def test_get_and_delete(dapi: Api) -> None:
    agent = await _agent(dapi)
    got = await dapi.get(f"/v1/agents/{agent['id']}")
    assert assert_answer(got, "GET", "/v1/agents/{agent_id}") == agent
    deleted = await dapi.delete(f"/v1/agents/{agent['id']}")
    assert deleted.status == 204
    assert deleted.raw == b""
    assert deleted.headers["Content-Type"] == "application/json"
    assert detail(await dapi.get(f"/v1/agents/{agent['id']}"), 404) == "Agent not found"
    assert detail(await dapi.delete(f"/v1/agents/{agent['id']}"), 404) == "Agent not found"


@pytest.mark.asyncio
async def test_a_run_answers_json_even_when_asked_to_stream(dapi: Api) -> None:
    agent = await _agent(dapi, system_prompt="You are a helpful research assistant.")
    reply = await dapi.post(
        f"/v1/agents/{agent['id']}/run", {"message": "hi there", "stream": True, "context": None}
    )
    assert reply.headers["Content-Type"].startswith("application/json")
    run = assert_answer(reply, "POST", "/v1/agents/{agent_id}/run")
    assert run["agent_id"] == agent["id"]
    assert run["model"] == "claude-3-sonnet"
    assert run["content"].startswith("As a helpful research assistant")
    empty = await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": ""})
    assert empty.body["detail"][0]["type"] == "string_too_short"
    missing = await dapi.post("/v1/agents/agent_nope/run", {"message": "hi"})
    assert detail(missing, 404) == "Agent not found"


@pytest.mark.asyncio
async def test_runs_are_recorded_as_executions_in_the_deployed_shape(dapi: Api) -> None:
    agent = await _agent(dapi)
    run = (await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": "one"})).body
    await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": "two", "context": {"k": 1}})
    listed = await dapi.get("/v1/executions")
    page = assert_answer(listed, "GET", "/v1/executions")
    assert page["total"] == 2
    first, second = page["data"]
    assert (first["agent_id"], first["workflow_id"]) == (agent["id"], None)
    assert first["inputs"] == {"message": "one", "context": {}}
    assert second["inputs"] == {"message": "two", "context": {"k": 1}}
    assert first["outputs"] == run
    assert (first["status"], first["step_results"]) == ("completed", [])
    assert first["completed_at"] is not None
    assert first["duration_ms"] >= 0
    got = await dapi.get(f"/v1/executions/{first['id']}")
    assert assert_answer(got, "GET", "/v1/executions/{execution_id}") == first


@pytest.mark.asyncio
async def test_execution_filters_cancel_and_logs(dapi: Api, deployed: RunningEmulator) -> None:
    agent = await _agent(dapi)
    await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": "one"})
    assert (await dapi.get("/v1/executions?status=running")).body["total"] == 0
    assert (await dapi.get("/v1/executions?status=completed")).body["total"] == 1
    assert (await dapi.get("/v1/executions?status=")).body["total"] == 1
    execution_id = (await dapi.get("/v1/executions")).body["data"][0]["id"]
    cancel = await dapi.post(f"/v1/executions/{execution_id}/cancel")
    assert detail(cancel, 400) == "Cannot cancel execution with status: completed"
    logs = await dapi.get(f"/v1/executions/{execution_id}/logs?limit=0")
    body = assert_answer(logs, "GET", "/v1/executions/{execution_id}/logs")
    assert body["execution_id"] == execution_id
    assert body["logs"]
    assert all(set(entry) == {"timestamp", "level", "message"} for entry in body["logs"])
    for path in ("", "/logs"):
        missing = await dapi.get(f"/v1/executions/exec_nope{path}")
        assert detail(missing, 404) == "Execution not found"
    assert detail(await dapi.post("/v1/executions/exec_nope/cancel"), 404) == "Execution not found"


@pytest.mark.asyncio
async def test_cancelling_a_running_execution(dapi: Api, deployed: RunningEmulator) -> None:
    agent = await _agent(dapi)
    await dapi.post(f"/v1/agents/{agent['id']}/run", {"message": "one"})
    execution = next(iter(deployed.state.store.executions.rows.values()))
    execution.status, execution.completed_at = "running", None
    reply = await dapi.post(f"/v1/executions/{execution.id}/cancel")
    cancelled = assert_answer(reply, "POST", "/v1/executions/{execution_id}/cancel")
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
