"""AuthService: sign-up, login, the current user, API keys."""

from __future__ import annotations

from aiohttp import web

from ..auth import generate_api_key, issue_token, make_api_key, verify_password
from ..context import json_body, principal_of, state_of
from ..errors import conflict, unauthorized
from ..jsonio import json_response, list_query, list_response, no_content
from ..validation import Field, email, string, validate_body

SIGNUP = (
    Field("email", email(), required=True),
    Field("password", string(min_length=8), required=True),
    Field("name", string()),
)
LOGIN = (
    Field("email", email(), required=True),
    Field("password", string(), required=True),
)
NEW_KEY = (Field("name", string(min_length=1), required=True),)


async def signup(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), SIGNUP)
    if state.store.user_by_email(body["email"]) is not None:
        raise conflict("A user with this email already exists")
    name = body.get("name") or body["email"].split("@")[0]
    user = state.create_account(body["email"], body["password"], name)
    state.created("user")
    return json_response(state.render(user), 201)


async def login(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), LOGIN)
    user = state.store.user_by_email(body["email"])
    if user is None or not verify_password(body["password"], user.password_hash):
        raise unauthorized("Incorrect email or password")
    ttl = state.config.jwt_ttl_seconds
    token = issue_token(user, state.config.jwt_secret, ttl)
    return json_response({"access_token": token, "token_type": "bearer", "expires_in": ttl})


async def me(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).render(principal_of(request).user))


async def create_api_key(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = validate_body(await json_body(request), NEW_KEY)
    key = generate_api_key()
    record = state.store.add_api_key(
        make_api_key(principal_of(request).account_id, body["name"], key)
    )
    state.created("api_key")
    return json_response(record.to_json(state.style, key=key), 201)


async def list_api_keys(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = list_query(request)
    keys = state.store.api_keys.of(principal_of(request).account_id)
    return list_response(keys, query, state.render)


async def delete_api_key(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.store.revoke_api_key(principal_of(request).account_id, request.match_info["key_id"])
    return no_content()
