"""Search and access control (roles, team)."""

from __future__ import annotations

import pytest

from .emulator_testkit import Api, SignUp


async def _seed(api: Api) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, prompt in [
        ("Customer Support Bot", "You help customers"),
        ("Support Triage", "Route tickets"),
        ("Researcher", "You support research about customer churn"),
    ]:
        ids[name] = (await api.post("/v1/agents", {"name": name, "system_prompt": prompt})).body[
            "id"
        ]
    flow = {"name": "Nightly", "description": "Customer support digest", "status": "inactive"}
    ids["Nightly"] = (await api.post("/v1/workflows", flow)).body["id"]
    return ids


@pytest.mark.asyncio
async def test_search_scores_and_orders(api: Api) -> None:
    ids = await _seed(api)
    reply = await api.get("/v1/search?q=SUPPORT")
    assert reply.status == 200
    hits = reply.body["data"]
    assert [hit["id"] for hit in hits] == [
        ids["Support Triage"],
        ids["Customer Support Bot"],
        ids["Nightly"],
        ids["Researcher"],
    ]
    assert [hit["score"] for hit in hits] == [0.9, 0.8, 0.6, 0.4]
    assert set(hits[0]) == {"type", "id", "name", "description", "status", "score"}
    assert reply.body["total"] == 4


@pytest.mark.asyncio
async def test_search_filters(api: Api) -> None:
    ids = await _seed(api)
    workflows = (await api.get("/v1/search?q=customer&types=workflow")).body["data"]
    assert [hit["id"] for hit in workflows] == [ids["Nightly"]]
    inactive = (await api.get("/v1/search?q=support&status=inactive")).body["data"]
    assert [hit["type"] for hit in inactive] == ["workflow"]
    paged = (await api.get("/v1/search?q=support&limit=1&offset=1")).body
    assert (len(paged["data"]), paged["total"]) == (1, 4)
    bad = await api.get("/v1/search?q=x&types=agent,robot")
    assert bad.status == 422
    assert bad.body["detail"][0]["loc"] == ["query", "types"]


@pytest.mark.asyncio
async def test_search_finds_executions_when_asked(api: Api) -> None:
    agent = (await api.post("/v1/agents", {"name": "Runner"})).body
    await api.post(f"/v1/agents/{agent['id']}/run", {"message": "go"})
    assert (await api.get("/v1/search?q=runner")).body["total"] == 1
    hits = (await api.get("/v1/search?q=runner&types=execution,agent")).body["data"]
    assert sorted(hit["type"] for hit in hits) == ["agent", "execution"]


@pytest.mark.asyncio
async def test_roles_are_built_in(api: Api) -> None:
    roles = (await api.get("/v1/access/roles")).body
    assert [role["id"] for role in roles["data"]] == [
        "role_owner",
        "role_admin",
        "role_developer",
        "role_viewer",
    ]
    viewer = roles["data"][-1]
    assert set(viewer) == {"id", "name", "description", "permissions"}
    assert all(permission.endswith(":read") for permission in viewer["permissions"])


@pytest.mark.asyncio
async def test_team_membership(api: Api, new_user: SignUp) -> None:
    team = (await api.get("/v1/access/team")).body
    assert set(team) == {"id", "name", "members", "created_at"}
    owner = team["members"][0]
    assert (owner["role_id"], owner["status"], owner["email"]) == (
        "role_owner",
        "active",
        "demo@gagiteck.local",
    )

    invited = await api.post(
        "/v1/access/team/members", {"email": "Dev@Example.com", "role_id": "role_developer"}
    )
    assert invited.status == 201
    member = invited.body
    assert member["id"].startswith("mem_")
    assert (member["email"], member["status"], member["joined_at"]) == (
        "dev@example.com",
        "invited",
        None,
    )
    assert (await api.get("/v1/access/team")).body["members"][1] == member

    again = await api.post(
        "/v1/access/team/members", {"email": "dev@example.com", "role_id": "role_viewer"}
    )
    assert again.status == 409
    unknown = await api.post(
        "/v1/access/team/members", {"email": "x@example.com", "role_id": "role_god"}
    )
    assert unknown.status == 422
    assert unknown.body["detail"][0]["loc"] == ["body", "role_id"]

    changed = await api.patch(f"/v1/access/team/members/{member['id']}", {"role_id": "role_admin"})
    assert (changed.status, changed.body["role_id"]) == (200, "role_admin")
    assert (
        await api.patch("/v1/access/team/members/mem_nope", {"role_id": "role_admin"})
    ).status == 404

    owner_removal = await api.delete(f"/v1/access/team/members/{owner['id']}")
    assert owner_removal.status == 403
    assert owner_removal.body["code"] == "FORBIDDEN"
    owner_change = await api.patch(
        f"/v1/access/team/members/{owner['id']}", {"role_id": "role_viewer"}
    )
    assert owner_change.status == 403

    assert (await api.delete(f"/v1/access/team/members/{member['id']}")).status == 204
    assert (await api.delete(f"/v1/access/team/members/{member['id']}")).status == 404
    other = await new_user()
    assert len((await other.get("/v1/access/team")).body["members"]) == 1
