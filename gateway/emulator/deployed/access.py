"""Access control in the deployed dialect: roles, the one team, permissions.

Reproduced on purpose: the four built-in roles are stored under their short
names (`admin`, `developer`, `viewer`, `operator`) while their ids read
`role_admin`, …; every lookup goes by storage key, so `GET /roles/role_admin`
is 404 and an invitation with `role_id: "role_admin"` is 400 "Invalid role",
while `admin` works. Custom roles are stored under their ids. Built-in roles
cannot be changed or deleted (400).

There is one team for everybody, created by the first invitation (until then
`GET /team` answers `{"message": "No team configured"}`), owned by the
placeholder `current_user`. Invitations stay `pending`; the invited address
is not checked. A member's new role comes in the query (`?role_id=`); a body
is ignored. A member whose role was deleted shows `role: {}`.
"""

from __future__ import annotations

from typing import Any

from ..clock import render_time, utcnow
from ..ids import new_id
from ..state import EmulatorState
from .data import PERMISSION_CATALOGUE, DeployedMember, DeployedRole, DeployedTeam
from .operations import Call, bad_request, not_found

TEAM_NAME = "Default Team"
TEAM_OWNER = "current_user"


def _role(call: Call) -> tuple[str, DeployedRole]:
    key = call.path["role_id"]
    role = call.state.deployed.roles.get(key)
    if role is None:
        raise not_found("Role")
    return key, role


def _role_json(state: EmulatorState, role_id: str) -> dict[str, Any]:
    role = state.deployed.roles.get(role_id)
    return {} if role is None else role.to_json(state.style)


async def list_roles(call: Call) -> Any:
    state = call.state
    return [role.to_json(state.style) for role in state.deployed.roles.values()]


async def create_role(call: Call) -> Any:
    state, body = call.state, call.body
    role = DeployedRole(new_id("role"), body["name"], body["description"], body["permissions"])
    state.deployed.roles[role.id] = role
    state.created("role")
    return role.to_json(state.style)


async def get_role(call: Call) -> Any:
    return _role(call)[1].to_json(call.state.style)


async def update_role(call: Call) -> Any:
    _, role = _role(call)
    if role.is_system:
        raise bad_request("Cannot modify system roles")
    for name in ("name", "description", "permissions"):
        if call.body[name] is not None:
            setattr(role, name, call.body[name])
    role.updated_at = utcnow()
    return role.to_json(call.state.style)


async def delete_role(call: Call) -> Any:
    key, role = _role(call)
    if role.is_system:
        raise bad_request("Cannot delete system roles")
    del call.state.deployed.roles[key]


async def get_team(call: Call) -> Any:
    state = call.state
    team = state.deployed.team
    if team is None:
        return {"message": "No team configured"}
    members = [
        {
            "id": member.id,
            "email": member.email,
            "name": member.name,
            "role": _role_json(state, member.role_id),
            "status": member.status,
            "invited_at": render_time(member.invited_at, state.style),
        }
        for member in state.deployed.members.values()
        if member.team_id == team.id
    ]
    return {
        "id": team.id,
        "name": team.name,
        "owner_id": team.owner_id,
        "members": members,
        "created_at": render_time(team.created_at, state.style),
    }


async def invite_team_member(call: Call) -> Any:
    state, body = call.state, call.body
    data = state.deployed
    email, role_id = body["email"], body["role_id"]
    if role_id not in data.roles:
        raise bad_request("Invalid role")
    if any(member.email == email for member in data.members.values()):
        raise bad_request("Email already invited")
    if data.team is None:
        data.team = DeployedTeam(new_id("team"), TEAM_NAME, TEAM_OWNER)
    member = DeployedMember(new_id("member"), data.team.id, email, role_id)
    data.members[member.id] = member
    state.created("team_member")
    return {
        "id": member.id,
        "email": email,
        "role": _role_json(state, role_id),
        "status": member.status,
        "message": f"Invitation sent to {email}",
    }


async def update_team_member(call: Call) -> Any:
    data = call.state.deployed
    member = data.members.get(call.path["member_id"])
    if member is None:
        raise not_found("Member")
    role_id = call.query["role_id"]
    if role_id not in data.roles:
        raise bad_request("Invalid role")
    member.role_id = role_id
    return {"message": "Member role updated"}


async def remove_team_member(call: Call) -> Any:
    data = call.state.deployed
    if data.members.pop(call.path["member_id"], None) is None:
        raise not_found("Member")


async def list_permissions(call: Call) -> Any:
    return {
        "resources": {
            resource: {"description": description, "actions": list(actions)}
            for resource, (description, actions) in PERMISSION_CATALOGUE.items()
        }
    }
