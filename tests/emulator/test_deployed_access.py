"""Deployed dialect: roles (the built-in ones stored under short names), the one shared team,
invitations, role changes through the query, and the permission catalogue."""

from __future__ import annotations

from typing import Any

import pytest

from .deployed_testkit import assert_answer, detail
from .emulator_testkit import Api

SYSTEM = [
    ("role_admin", "Admin"),
    ("role_developer", "Developer"),
    ("role_viewer", "Viewer"),
    ("role_operator", "Operator"),
]


async def _custom_role(dapi: Api) -> Any:
    reply = await dapi.post(
        "/v1/access/roles",
        {
            "name": "Auditor",
            "description": "reads",
            "permissions": [{"resource": "agents", "actions": ["read"]}],
            "is_system": True,
        },
    )
    assert reply.status == 201, reply.body
    return assert_answer(reply, "POST", "/v1/access/roles")


@pytest.mark.asyncio
async def test_the_built_in_roles(dapi: Api) -> None:
    reply = await dapi.get("/v1/access/roles")
    roles = assert_answer(reply, "GET", "/v1/access/roles")
    assert [(role["id"], role["name"]) for role in roles] == SYSTEM
    assert all(role["is_system"] for role in roles)
    admin = roles[0]
    assert admin["permissions"][0] == {
        "resource": "agents",
        "actions": ["create", "read", "update", "delete", "execute"],
    }
    assert [p["resource"] for p in admin["permissions"]] == [
        "agents",
        "workflows",
        "executions",
        "webhooks",
        "settings",
        "team",
    ]


@pytest.mark.asyncio
async def test_built_in_roles_answer_to_their_short_names_only(dapi: Api) -> None:
    assert detail(await dapi.get("/v1/access/roles/role_admin"), 404) == "Role not found"
    admin = await dapi.get("/v1/access/roles/admin")
    assert assert_answer(admin, "GET", "/v1/access/roles/{role_id}")["id"] == "role_admin"
    changed = await dapi.patch("/v1/access/roles/admin", {"name": "x"})
    assert detail(changed, 400) == "Cannot modify system roles"
    assert detail(await dapi.delete("/v1/access/roles/admin"), 400) == "Cannot delete system roles"
    assert detail(await dapi.patch("/v1/access/roles/role_admin", {}), 404) == "Role not found"
    assert detail(await dapi.delete("/v1/access/roles/role_admin"), 404) == "Role not found"


@pytest.mark.asyncio
async def test_custom_roles(dapi: Api) -> None:
    role = await _custom_role(dapi)
    assert role["id"].startswith("role_")
    assert role["is_system"] is False
    path = f"/v1/access/roles/{role['id']}"
    assert assert_answer(await dapi.get(path), "GET", "/v1/access/roles/{role_id}") == role
    reply = await dapi.patch(path, {"name": None, "permissions": []})
    updated = assert_answer(reply, "PATCH", "/v1/access/roles/{role_id}")
    assert (updated["name"], updated["permissions"]) == ("Auditor", [])
    assert [r["id"] for r in (await dapi.get("/v1/access/roles")).body][-1] == role["id"]
    deleted = await dapi.delete(path)
    assert (deleted.status, deleted.raw) == (204, b"")
    assert detail(await dapi.get(path), 404) == "Role not found"


@pytest.mark.asyncio
async def test_role_validation(dapi: Api) -> None:
    reply = await dapi.post("/v1/access/roles", {"name": "", "permissions": [{"resource": "a"}]})
    assert [(i["type"], i["loc"]) for i in reply.body["detail"]] == [
        ("string_too_short", ["body", "name"]),
        ("missing", ["body", "permissions", 0, "actions"]),
    ]
    missing = await dapi.post("/v1/access/roles", {"name": "n"})
    assert missing.body["detail"][0]["loc"] == ["body", "permissions"]


@pytest.mark.asyncio
async def test_no_team_until_the_first_invitation(dapi: Api) -> None:
    reply = await dapi.get("/v1/access/team")
    assert assert_answer(reply, "GET", "/v1/access/team") == {"message": "No team configured"}
    refused = await dapi.post(
        "/v1/access/team/members", {"email": "x@example.com", "role_id": "role_admin"}
    )
    assert detail(refused, 400) == "Invalid role"
    assert (await dapi.get("/v1/access/team")).body == {"message": "No team configured"}


@pytest.mark.asyncio
async def test_invitations(dapi: Api) -> None:
    reply = await dapi.post(
        "/v1/access/team/members", {"email": "x@example.com", "role_id": "admin"}
    )
    invited = assert_answer(reply, "POST", "/v1/access/team/members")
    assert reply.status == 201
    assert invited["id"].startswith("member_")
    assert (invited["email"], invited["status"]) == ("x@example.com", "pending")
    assert invited["message"] == "Invitation sent to x@example.com"
    assert invited["role"]["id"] == "role_admin"
    assert set(invited["role"]) == {
        "id",
        "name",
        "description",
        "permissions",
        "is_system",
        "created_at",
        "updated_at",
    }
    again = await dapi.post(
        "/v1/access/team/members", {"email": "x@example.com", "role_id": "viewer"}
    )
    assert detail(again, 400) == "Email already invited"
    unchecked = await dapi.post("/v1/access/team/members", {"email": "nope", "role_id": "viewer"})
    assert unchecked.status == 201
    missing = await dapi.post("/v1/access/team/members", {})
    assert [i["loc"] for i in missing.body["detail"]] == [["body", "email"], ["body", "role_id"]]
    team = (await dapi.get("/v1/access/team")).body
    assert team["name"] == "Default Team"
    assert team["owner_id"] == "current_user"
    assert team["id"].startswith("team_")
    assert [m["email"] for m in team["members"]] == ["x@example.com", "nope"]
    assert set(team["members"][0]) == {"id", "email", "name", "role", "status", "invited_at"}
    assert team["members"][0]["name"] is None


@pytest.mark.asyncio
async def test_role_changes_come_in_the_query(dapi: Api) -> None:
    member = (
        await dapi.post("/v1/access/team/members", {"email": "y@example.com", "role_id": "viewer"})
    ).body
    path = f"/v1/access/team/members/{member['id']}"
    in_body = await dapi.patch(path, {"role_id": "admin"})
    assert in_body.status == 422
    assert in_body.body["detail"] == [
        {"type": "missing", "loc": ["query", "role_id"], "msg": "Field required", "input": None}
    ]
    assert detail(await dapi.patch(f"{path}?role_id=role_admin"), 400) == "Invalid role"
    assert detail(await dapi.patch("/v1/access/team/members/nope?role_id=admin"), 404) == (
        "Member not found"
    )
    reply = await dapi.patch(f"{path}?role_id=developer", {"role_id": "viewer"})
    assert assert_answer(reply, "PATCH", "/v1/access/team/members/{member_id}") == {
        "message": "Member role updated"
    }
    team = (await dapi.get("/v1/access/team")).body
    assert team["members"][0]["role"]["id"] == "role_developer"


@pytest.mark.asyncio
async def test_a_deleted_role_leaves_an_empty_role(dapi: Api) -> None:
    role = await _custom_role(dapi)
    await dapi.post("/v1/access/team/members", {"email": "z@example.com", "role_id": role["id"]})
    await dapi.delete(f"/v1/access/roles/{role['id']}")
    team = (await dapi.get("/v1/access/team")).body
    assert team["members"][0]["role"] == {}


@pytest.mark.asyncio
async def test_removing_members(dapi: Api) -> None:
    member = (
        await dapi.post("/v1/access/team/members", {"email": "w@example.com", "role_id": "viewer"})
    ).body
    path = f"/v1/access/team/members/{member['id']}"
    removed = await dapi.delete(path)
    assert (removed.status, removed.raw) == (204, b"")
    assert detail(await dapi.delete(path), 404) == "Member not found"
    assert (await dapi.get("/v1/access/team")).body["members"] == []


@pytest.mark.asyncio
async def test_the_permission_catalogue(dapi: Api) -> None:
    reply = await dapi.get("/v1/access/permissions")
    catalogue = assert_answer(reply, "GET", "/v1/access/permissions")["resources"]
    assert list(catalogue) == ["agents", "workflows", "executions", "webhooks", "settings", "team"]
    assert catalogue["executions"] == {
        "description": "Execution monitoring",
        "actions": ["read", "cancel"],
    }
