"""Workflows: CRUD, executions with templates, failures, cancellation, logs."""

from __future__ import annotations

import orjson
import pytest

from gateway.emulator import RunningEmulator
from gateway.emulator.templates import resolve

from .emulator_testkit import Api, Receiver, wait_execution, wait_for


def _pipeline(agent_id: str, hook_url: str) -> dict[str, object]:
    return {
        "name": "Content Pipeline",
        "description": "Generate and publish blog content",
        "steps": [
            {
                "id": "brief",
                "type": "transform",
                "name": "Brief",
                "config": {"template": {"topic": "{{input.topic}}", "lang": "{{input.meta.lang}}"}},
            },
            {
                "id": "research",
                "type": "agent",
                "name": "Research",
                "config": {
                    "agent_id": agent_id,
                    "message": "Research the topic: {{brief.output.topic}}",
                },
            },
            {
                "id": "publish",
                "type": "webhook",
                "name": "Publish",
                "config": {
                    "url": hook_url,
                    "method": "POST",
                    "body": {"content": "{{research.output}}"},
                },
            },
            {
                "id": "summary",
                "type": "transform",
                "config": {"template": "Done: {{brief.output.topic}}"},
            },
        ],
    }


@pytest.mark.asyncio
async def test_workflow_crud(api: Api) -> None:
    created = await api.post(
        "/v1/workflows", {"name": "wf", "steps": [{"type": "delay", "config": {"seconds": 0}}]}
    )
    assert created.status == 201
    workflow = created.body
    assert workflow["id"].startswith("wf_")
    assert workflow["steps"] == [
        {"id": "step_1", "type": "delay", "name": "step_1", "config": {"seconds": 0}}
    ]
    assert workflow["description"] is None
    assert workflow["status"] == "active"
    assert (await api.get(f"/v1/workflows/{workflow['id']}")).body == workflow
    patched = (
        await api.patch(
            f"/v1/workflows/{workflow['id']}", {"description": "d", "status": "inactive"}
        )
    ).body
    assert (patched["description"], patched["status"], patched["name"]) == ("d", "inactive", "wf")
    assert (await api.delete(f"/v1/workflows/{workflow['id']}")).status == 204
    assert (await api.get(f"/v1/workflows/{workflow['id']}")).status == 404


@pytest.mark.parametrize(
    ("steps", "loc", "kind"),
    [
        ([{"type": "email"}], ["body", "steps", 0, "type"], "literal_error"),
        ([{"config": {}}], ["body", "steps", 0, "type"], "missing"),
        (
            [{"id": "a", "type": "delay"}, {"id": "a", "type": "delay"}],
            ["body", "steps", 1, "id"],
            "value_error",
        ),
        ("steps", ["body", "steps"], "list_type"),
    ],
    ids=["type", "missing-type", "duplicate-id", "not-a-list"],
)
@pytest.mark.asyncio
async def test_invalid_steps_are_422(api: Api, steps: object, loc: list[object], kind: str) -> None:
    reply = await api.post("/v1/workflows", {"name": "bad", "steps": steps})
    assert reply.status == 422
    assert reply.body["detail"][0]["loc"] == loc
    assert reply.body["detail"][0]["type"] == kind


@pytest.mark.asyncio
async def test_execution_runs_steps_with_templates(api: Api, receiver: Receiver) -> None:
    agent = (
        await api.post("/v1/agents", {"name": "Writer", "system_prompt": "You are a writer."})
    ).body
    workflow = (await api.post("/v1/workflows", _pipeline(agent["id"], receiver.url))).body
    triggered = await api.post(
        f"/v1/workflows/{workflow['id']}/trigger",
        {"input": {"topic": "AI agents", "meta": {"lang": "en"}}},
    )
    assert triggered.status == 200
    execution = triggered.body
    assert execution["id"].startswith("exec_")
    assert (execution["type"], execution["resource_id"], execution["status"]) == (
        "workflow",
        workflow["id"],
        "running",
    )
    done = await wait_execution(api, execution["id"])
    assert done["status"] == "completed", done
    results = {step["step_id"]: step for step in done["step_results"]}
    assert list(results) == ["brief", "research", "publish", "summary"]
    assert results["brief"]["output"] == {"topic": "AI agents", "lang": "en"}
    assert "Research the topic: AI agents" in results["research"]["output"]
    assert results["publish"]["output"]["status_code"] == 200
    assert all(
        step["status"] == "completed" and step["completed_at"] for step in done["step_results"]
    )
    assert done["result"] == "Done: AI agents"
    sent = orjson.loads(receiver.received[0].raw)
    assert sent == {"content": results["research"]["output"]}
    logs = (await api.get(f"/v1/executions/{execution['id']}/logs?limit=100")).body
    assert logs["total"] >= 10
    assert {entry["level"] for entry in logs["data"]} <= {"debug", "info", "warning", "error"}
    assert {entry["step_id"] for entry in logs["data"]} >= {
        None,
        "brief",
        "research",
        "publish",
        "summary",
    }


@pytest.mark.asyncio
async def test_remote_webhook_steps_are_simulated(api: Api) -> None:
    steps = [{"id": "out", "type": "webhook", "config": {"url": "https://api.blog.example/posts"}}]
    workflow = (await api.post("/v1/workflows", {"name": "remote", "steps": steps})).body
    execution = (await api.post(f"/v1/workflows/{workflow['id']}/trigger", {"input": {}})).body
    done = await wait_execution(api, execution["id"])
    assert done["status"] == "completed"
    assert done["result"]["simulated"] is True


@pytest.mark.asyncio
async def test_a_failing_step_fails_the_execution(api: Api) -> None:
    steps = [
        {"id": "one", "type": "transform", "config": {"template": "x"}},
        {"id": "two", "type": "agent", "config": {"agent_id": "agent_missing", "message": "hi"}},
        {"id": "three", "type": "transform", "config": {"template": "never"}},
    ]
    workflow = (await api.post("/v1/workflows", {"name": "broken", "steps": steps})).body
    execution = (await api.post(f"/v1/workflows/{workflow['id']}/trigger", {})).body
    done = await wait_execution(api, execution["id"])
    assert done["status"] == "failed"
    assert "agent_missing not found" in done["error"]
    assert [(s["step_id"], s["status"]) for s in done["step_results"]] == [
        ("one", "completed"),
        ("two", "failed"),
    ]
    failed = (await api.get("/v1/executions?status=failed")).body
    assert [item["id"] for item in failed["data"]] == [execution["id"]]


@pytest.mark.asyncio
async def test_cancel_mid_run_stops_remaining_steps(api: Api, emulator: RunningEmulator) -> None:
    steps = [
        {"id": "quick", "type": "transform", "config": {"template": "ok"}},
        {"id": "slow", "type": "delay", "config": {"seconds": 30}},
        {"id": "after", "type": "transform", "config": {"template": "never"}},
    ]
    workflow = (await api.post("/v1/workflows", {"name": "long", "steps": steps})).body
    execution = (await api.post(f"/v1/workflows/{workflow['id']}/trigger", {"input": {}})).body

    async def sleeping() -> bool:
        logs = (await api.get(f"/v1/executions/{execution['id']}/logs?limit=100")).body["data"]
        return any(entry["message"].startswith("Step slow") for entry in logs)

    await wait_for(sleeping)
    cancelled = await api.post(f"/v1/executions/{execution['id']}/cancel", {})
    assert cancelled.status == 200
    assert cancelled.body["status"] == "cancelled"
    done = await wait_execution(api, execution["id"])
    assert [(s["step_id"], s["status"]) for s in done["step_results"]] == [
        ("quick", "completed"),
        ("slow", "cancelled"),
    ]
    again = await api.post(f"/v1/executions/{execution['id']}/cancel", {})
    assert again.status == 409
    assert again.body["code"] == "CONFLICT"
    assert emulator.state.execution_tasks == {}


@pytest.mark.asyncio
async def test_runs_of_a_workflow_and_execution_filters(api: Api) -> None:
    workflow = (await api.post("/v1/workflows", {"name": "twice", "steps": []})).body
    other = (await api.post("/v1/workflows", {"name": "other", "steps": []})).body
    ids = [
        (await api.post(f"/v1/workflows/{workflow['id']}/trigger", {})).body["id"] for _ in range(2)
    ]
    await api.post(f"/v1/workflows/{other['id']}/trigger", {})
    for ident in ids:
        await wait_execution(api, ident)
    runs = (await api.get(f"/v1/workflows/{workflow['id']}/runs")).body
    assert runs["total"] == 2
    assert [run["id"] for run in runs["data"]] == list(reversed(ids))
    assert (await api.get("/v1/workflows/wf_missing/runs")).status == 404
    bad = await api.get("/v1/executions?status=paused")
    assert bad.status == 422
    assert bad.body["detail"][0]["type"] == "enum"
    assert (await api.get("/v1/executions/exec_missing")).status == 404


def test_templates_resolve_recursively() -> None:
    scope = {"input": {"a": {"b": [10, 20]}, "name": "Ann"}, "s1": {"output": {"x": 1}}}
    missing: list[str] = []
    value = {
        "whole": "{{input.a}}",
        "text": "Hi {{ input.name }}, {{s1.output}} {{input.a.b.1}}",
        "nested": ["{{s1.output.x}}", {"deep": "{{nope.output}}"}],
        "number": 3,
    }
    assert resolve(value, scope, missing.append) == {
        "whole": {"b": [10, 20]},
        "text": 'Hi Ann, {"x":1} 20',
        "nested": [1, {"deep": ""}],
        "number": 3,
    }
    assert missing == ["nope.output"]
