"""Deployed dialect: search (`{query, results, total, took_ms}`, the service's scoring, no
offset) and suggestions."""

from __future__ import annotations

from typing import Any

import pytest

from .deployed_testkit import assert_answer
from .emulator_testkit import Api


async def _seed(dapi: Api) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, prompt in (
        ("Research", "You are a helpful research assistant."),
        ("Researcher Two", None),
        ("Support", "Answer customer questions"),
    ):
        body = {"name": name} if prompt is None else {"name": name, "system_prompt": prompt}
        ids[name] = (await dapi.post("/v1/agents", body)).body["id"]
    ids["Pipe"] = (
        await dapi.post("/v1/workflows", {"name": "Pipe", "description": "research pipeline"})
    ).body["id"]
    return ids


async def _search(dapi: Api, query: str) -> Any:
    reply = await dapi.get(f"/v1/search?{query}")
    assert reply.status == 200, reply.body
    return assert_answer(reply, "GET", "/v1/search")


@pytest.mark.asyncio
async def test_search_scores_like_the_service(dapi: Api) -> None:
    ids = await _seed(dapi)
    found = await _search(dapi, "q=research")
    assert found["query"] == "research"
    assert isinstance(found["took_ms"], float)
    scores = {(r["type"], r["id"]): r["score"] for r in found["results"]}
    assert scores == {
        ("agent", ids["Research"]): 1.0,
        ("agent", ids["Researcher Two"]): 0.8,
        ("workflow", ids["Pipe"]): 0.8 * 0.7,
    }
    assert found["total"] == 3
    first = found["results"][0]
    assert first["description"] == "You are a helpful research assistant."
    assert first["status"] == "active"
    words = await _search(dapi, "q=helpful%20assistant")
    assert [r["score"] for r in words["results"]] == [0.5 * 0.6 * 0.7]


@pytest.mark.asyncio
async def test_filters_limit_and_total(dapi: Api) -> None:
    ids = await _seed(dapi)
    only_workflows = await _search(dapi, "q=research&types=workflow,bogus")
    assert [r["id"] for r in only_workflows["results"]] == [ids["Pipe"]]
    everything = await _search(dapi, "q=research&types=")
    assert everything["total"] == 3
    none_active = await _search(dapi, "q=research&status=inactive")
    assert none_active["results"] == []
    cut = await _search(dapi, "q=research&limit=1&offset=2")
    assert (cut["total"], len(cut["results"])) == (1, 1)


@pytest.mark.asyncio
async def test_executions_are_found_by_id_and_agent(dapi: Api) -> None:
    ids = await _seed(dapi)
    await dapi.post(f"/v1/agents/{ids['Support']}/run", {"message": "hi"})
    found = await _search(dapi, f"q={ids['Support']}&types=execution")
    [result] = found["results"]
    assert (result["type"], result["name"]) == ("execution", "agent execution")
    assert result["description"] == f"Resource: {ids['Support']}"
    assert result["score"] == 1.0


@pytest.mark.asyncio
async def test_query_validation(dapi: Api) -> None:
    missing = await dapi.get("/v1/search")
    assert missing.body["detail"] == [
        {"type": "missing", "loc": ["query", "q"], "msg": "Field required", "input": None}
    ]
    empty = await dapi.get("/v1/search?q=")
    assert empty.body["detail"][0]["type"] == "string_too_short"
    too_long = await dapi.get("/v1/search?q=" + "x" * 101)
    assert too_long.body["detail"][0]["type"] == "string_too_long"
    bad_limit = await dapi.get("/v1/search?q=a&limit=101")
    assert bad_limit.body["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.asyncio
async def test_suggestions(dapi: Api) -> None:
    await _seed(dapi)
    await dapi.post("/v1/workflows", {"name": "Research"})
    reply = await dapi.get("/v1/search/suggestions?q=RES")
    suggestions = assert_answer(reply, "GET", "/v1/search/suggestions")
    assert suggestions == {
        "suggestions": [
            {"text": "Research", "type": "agent"},
            {"text": "Researcher Two", "type": "agent"},
        ]
    }
    one = (await dapi.get("/v1/search/suggestions?q=e&limit=1")).body
    assert one == {"suggestions": [{"text": "Research", "type": "agent"}]}
    too_many = await dapi.get("/v1/search/suggestions?q=e&limit=11")
    assert too_many.body["detail"][0]["ctx"] == {"le": 10}
