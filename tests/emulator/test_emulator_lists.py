"""Lists: `{data, total, limit, offset}`, newest first, and 422 on bad paging."""

from __future__ import annotations

import pytest

from .emulator_testkit import Api

LISTS = [
    "/v1/agents",
    "/v1/workflows",
    "/v1/executions",
    "/v1/webhooks",
    "/v1/auth/api-keys",
    "/v1/search",
]


@pytest.mark.asyncio
async def test_pages_of_agents(api: Api) -> None:
    names = [f"agent-{index}" for index in range(5)]
    for name in names:
        await api.post("/v1/agents", {"name": name})
    first = (await api.get("/v1/agents")).body
    assert (first["total"], first["limit"], first["offset"]) == (5, 20, 0)
    assert [agent["name"] for agent in first["data"]] == list(reversed(names))
    page = (await api.get("/v1/agents?limit=2&offset=2")).body
    assert [agent["name"] for agent in page["data"]] == ["agent-2", "agent-1"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    beyond = (await api.get("/v1/agents?offset=50")).body
    assert beyond["data"] == []
    assert beyond["total"] == 5


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.asyncio
async def test_every_list_has_the_envelope(api: Api, path: str) -> None:
    reply = await api.get(path + "?limit=100")
    assert reply.status == 200
    assert set(reply.body) == {"data", "total", "limit", "offset"}
    assert reply.body["limit"] == 100


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("limit=0", ["query", "limit"], "greater_than_equal"),
        ("limit=101", ["query", "limit"], "less_than_equal"),
        ("limit=abc", ["query", "limit"], "int_parsing"),
        ("offset=-1", ["query", "offset"], "greater_than_equal"),
        ("offset=1.5", ["query", "offset"], "int_parsing"),
    ],
)
@pytest.mark.asyncio
async def test_bad_paging_is_422(api: Api, query: str, loc: list[str], kind: str) -> None:
    reply = await api.get("/v1/agents?" + query)
    assert reply.status == 422
    issue = reply.body["detail"][0]
    assert issue["loc"] == loc
    assert issue["type"] == kind
    assert issue["input"] == query.split("=")[1]


@pytest.mark.asyncio
async def test_both_paging_errors_are_reported_at_once(api: Api) -> None:
    reply = await api.get("/v1/workflows?limit=0&offset=-5")
    assert [issue["loc"] for issue in reply.body["detail"]] == [
        ["query", "limit"],
        ["query", "offset"],
    ]
