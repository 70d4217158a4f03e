"""AccessService: roles, the team, invitations and membership changes."""

from __future__ import annotations

from aiohttp import web

from ..access import ROLE_IDS, ROLES, change_role, invite, remove_member
from ..context import json_body, principal_of, state_of
from ..jsonio import json_response, no_content
from ..resources import Team
from ..validation import Field, email, literal, validate_body

INVITE = (
    Field("email", email(), required=True),
    Field("role_id", literal(*ROLE_IDS), required=True),
)
ROLE_CHANGE = (Field("role_id", literal(*ROLE_IDS), required=True),)


def _team(request: web.Request) -> Team:
    return state_of(request).store.teams[principal_of(request).account_id]


async def list_roles(request: web.Request) -> web.StreamResponse:
    return json_response({"data": [role.to_json() for role in ROLES]})


async def get_team(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(_team(request)))


async def invite_member(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), INVITE)
    member = invite(_team(request), state.store, body["email"], body["role_id"])
    state.created("team_member")
    return json_response(member.to_json(state.style), 201)


async def update_member(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), ROLE_CHANGE)
    member = change_role(_team(request), request.match_info["member_id"], body["role_id"])
    return json_response(member.to_json(state.style))


async def delete_member(request: web.Request) -> web.StreamResponse:
    remove_member(_team(request), request.match_info["member_id"])
    return no_content()
