"""Role-based access: the built-in roles and each account's team."""

from __future__ import annotations

from dataclasses import dataclass

from .clock import utcnow
from .errors import conflict, forbidden, not_found
from .ids import new_id
from .resources import Json, Team, TeamMember, User
from .store import Store

_READ = ("agents:read", "workflows:read", "executions:read", "webhooks:read", "team:read")
_BUILD = (
    "agents:write",
    "agents:run",
    "workflows:write",
    "workflows:trigger",
    "executions:cancel",
    "webhooks:write",
    "api_keys:manage",
)
_ADMIN = ("team:write",)
_OWNER = ("billing:manage", "team:transfer")


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str
    permissions: tuple[str, ...]

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "permissions": list(self.permissions),
        }


OWNER_ROLE = "role_owner"
ROLES: tuple[Role, ...] = (
    Role(
        OWNER_ROLE,
        "Owner",
        "Full access, including billing and the team",
        _READ + _BUILD + _ADMIN + _OWNER,
    ),
    Role("role_admin", "Admin", "Manage resources and the team", _READ + _BUILD + _ADMIN),
    Role("role_developer", "Developer", "Build and run agents and workflows", _READ + _BUILD),
    Role("role_viewer", "Viewer", "Read-only access", _READ),
)
ROLE_IDS = tuple(role.id for role in ROLES)


def new_team(owner: User) -> Team:
    """An account's team: its owner as first, active member."""
    now = utcnow()
    member = TeamMember(
        new_id("mem"), owner.id, owner.email, owner.name, OWNER_ROLE, "active", now, now
    )
    return Team(new_id("team"), owner.id, f"{owner.name}'s team", [member], now)


def _check_assignable(role_id: str) -> None:
    if role_id == OWNER_ROLE:
        raise forbidden("The owner role cannot be assigned")


def invite(team: Team, store: Store, email: str, role_id: str) -> TeamMember:
    _check_assignable(role_id)
    if any(member.email == email for member in team.members):
        raise conflict(f"{email} is already a member of the team")
    user = store.user_by_email(email)
    member = TeamMember(
        new_id("mem"),
        None if user is None else user.id,
        email,
        None if user is None else user.name,
        role_id,
    )
    team.members.append(member)
    return member


def find_member(team: Team, member_id: str) -> TeamMember:
    for member in team.members:
        if member.id == member_id:
            return member
    raise not_found("Team member", member_id)


def change_role(team: Team, member_id: str, role_id: str) -> TeamMember:
    member = find_member(team, member_id)
    if member.role_id == OWNER_ROLE:
        raise forbidden("The owner's role cannot be changed")
    _check_assignable(role_id)
    member.role_id = role_id
    return member


def remove_member(team: Team, member_id: str) -> None:
    member = find_member(team, member_id)
    if member.role_id == OWNER_ROLE:
        raise forbidden("The team owner cannot be removed")
    team.members.remove(member)
