"""Deployed dialect: workflows with the service's steps and triggers, and runs that stay
`running` and never become executions."""

from __future__ import annotations

import asyncio

import pytest

from .deployed_testkit import assert_answer, detail
from .emulator_testkit import Api

STEP_DEFAULTS: dict[str, object] = {
    "agent_id": None,
    "action": None,
    "input_template": None,
    "depends_on": [],
    "condition": None,
    "timeout_ms": 60_000,
}


async def _workflow(dapi: Api, **body: object) -> dict[str, object]:
    reply = await dapi.post("/v1/workflows", {"name": "Pipe", **body})
    assert reply.status == 201, reply.body
    workflow: dict[str, object] = assert_answer(reply, "POST", "/v1/workflows")
    return workflow


@pytest.mark.asyncio
async def test_create_with_the_deployed_steps_and_triggers(dapi: Api) -> None:
    workflow = await _workflow(
        dapi,
        description="desc",
        steps=[
            {
                "id": "s1",
                "name": "One",
                "agent_id": "agent_x",
                "action": "run",
                "input_template": "{{input.topic}}",
                "type": "agent",
                "config": {"ignored": True},
            },
            {"id": "s1", "name": "Again", "depends_on": ["s1"], "timeout_ms": "5"},
        ],
        triggers=[{"type": "schedule", "cron": "* * * * *"}],
        metadata={"m": 1},
        status="inactive",
    )
    assert workflow["steps"] == [
        {
            **STEP_DEFAULTS,
            "id": "s1",
            "name": "One",
            "agent_id": "agent_x",
            "action": "run",
            "input_template": "{{input.topic}}",
        },
        {**STEP_DEFAULTS, "id": "s1", "name": "Again", "depends_on": ["s1"], "timeout_ms": 5},
    ]
    assert workflow["triggers"] == [{"type": "schedule", "cron": "* * * * *"}]
    assert (workflow["status"], workflow["metadata"]) == ("active", {"m": 1})
    bare = await _workflow(dapi)
    assert (bare["description"], bare["steps"], bare["triggers"]) == (None, [], [])


@pytest.mark.asyncio
async def test_step_and_trigger_validation(dapi: Api) -> None:
    reply = await dapi.post(
        "/v1/workflows",
        {"name": "w", "steps": [{"id": "s1"}, 1, {"id": 1, "name": None}], "triggers": ["x"]},
    )
    assert reply.status == 422
    assert [(i["type"], i["loc"]) for i in reply.body["detail"]] == [
        ("missing", ["body", "steps", 0, "name"]),
        ("model_attributes_type", ["body", "steps", 1]),
        ("string_type", ["body", "steps", 2, "id"]),
        ("string_type", ["body", "steps", 2, "name"]),
        ("dict_type", ["body", "triggers", 0]),
    ]


@pytest.mark.asyncio
async def test_update_replaces_what_it_names_and_ignores_status(dapi: Api) -> None:
    workflow = await _workflow(
        dapi, description="d", steps=[{"id": "a", "name": "A"}], triggers=[{"t": 1}]
    )
    path = f"/v1/workflows/{workflow['id']}"
    reply = await dapi.patch(
        path, {"status": "archived", "description": None, "steps": [{"id": "z", "name": "Z"}]}
    )
    updated = assert_answer(reply, "PATCH", "/v1/workflows/{workflow_id}")
    assert updated["steps"] == [{**STEP_DEFAULTS, "id": "z", "name": "Z"}]
    assert (updated["status"], updated["description"]) == ("active", "d")
    assert updated["triggers"] == [{"t": 1}]
    again = (await dapi.patch(path, {"steps": None, "metadata": {"n": 2}, "triggers": []})).body
    assert (again["steps"], again["metadata"], again["triggers"]) == (
        updated["steps"],
        {"n": 2},
        [],
    )
    assert detail(await dapi.patch("/v1/workflows/wf_nope", {}), 404) == "Workflow not found"


@pytest.mark.asyncio
async def test_trigger_answers_a_run_that_stays_running(dapi: Api) -> None:
    workflow = await _workflow(dapi, steps=[{"id": "s", "name": "S", "agent_id": "agent_x"}])
    path = f"/v1/workflows/{workflow['id']}"
    reply = await dapi.post(f"{path}/trigger", {"inputs": {"topic": "AI"}})
    assert reply.status == 200
    run = assert_answer(reply, "POST", "/v1/workflows/{workflow_id}/trigger")
    assert run["id"].startswith("run_")
    assert (run["workflow_id"], run["status"]) == (workflow["id"], "running")
    assert (run["inputs"], run["outputs"]) == ({"topic": "AI"}, {})
    reference_field = (await dapi.post(f"{path}/trigger", {"input": {"a": 1}})).body
    assert reference_field["inputs"] == {}
    await asyncio.sleep(0.1)
    runs = await dapi.get(f"{path}/runs?limit=1&offset=5")
    listed = assert_answer(runs, "GET", "/v1/workflows/{workflow_id}/runs")
    assert [r["id"] for r in listed] == [run["id"], reference_field["id"]]
    assert {r["status"] for r in listed} == {"running"}
    assert (await dapi.get("/v1/executions")).body["total"] == 0


@pytest.mark.asyncio
async def test_trigger_needs_a_body_checked_before_the_lookup(dapi: Api) -> None:
    workflow = await _workflow(dapi)
    missing = await dapi.call("POST", f"/v1/workflows/{workflow['id']}/trigger")
    assert missing.status == 422
    assert missing.body["detail"] == [
        {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
    ]
    null_inputs = await dapi.post(f"/v1/workflows/{workflow['id']}/trigger", {"inputs": None})
    assert null_inputs.body["detail"][0]["type"] == "dict_type"
    unknown_bad = await dapi.post("/v1/workflows/wf_nope/trigger", {"inputs": [1]})
    assert unknown_bad.status == 422
    unknown = await dapi.post("/v1/workflows/wf_nope/trigger", {})
    assert detail(unknown, 404) == "Workflow not found"
    assert detail(await dapi.get("/v1/workflows/wf_nope/runs"), 404) == "Workflow not found"


@pytest.mark.asyncio
async def test_list_get_delete(dapi: Api) -> None:
    first = await _workflow(dapi, description="one")
    second = await _workflow(dapi)
    await dapi.post(f"/v1/workflows/{first['id']}/trigger", {})
    page = assert_answer(await dapi.get("/v1/workflows"), "GET", "/v1/workflows")
    assert [w["id"] for w in page["data"]] == [first["id"], second["id"]]
    got = await dapi.get(f"/v1/workflows/{first['id']}")
    assert assert_answer(got, "GET", "/v1/workflows/{workflow_id}") == first
    deleted = await dapi.delete(f"/v1/workflows/{first['id']}")
    assert (deleted.status, deleted.raw) == (204, b"")
    assert detail(await dapi.get(f"/v1/workflows/{first['id']}/runs"), 404) == "Workflow not found"
    assert detail(await dapi.delete(f"/v1/workflows/{first['id']}"), 404) == "Workflow not found"
