"""Deployed dialect: sign-up, login (with lock-out), the profile, the password, API keys,
and which routes ask for a credential at all."""

from __future__ import annotations

import base64
import re

import orjson
import pytest

from gateway.emulator import running_emulator

from .deployed_testkit import assert_answer, deployed_config, detail
from .emulator_testkit import DEMO_KEY, Api

PASSWORD = "correct-horse"


async def _signup(dapi: Api, email: str = "ann@example.com", name: str = "Ann") -> Api:
    created = await dapi.post(
        "/v1/auth/signup", {"email": email, "password": PASSWORD, "name": name}
    )
    assert created.status == 201, created.body
    login = await dapi.post(
        "/v1/auth/login", {"email": created.body["email"], "password": PASSWORD}
    )
    assert login.status == 200, login.body
    return dapi.as_token(login.body["access_token"])


@pytest.mark.asyncio
async def test_signup_answers_the_deployed_user(dapi: Api) -> None:
    reply = await dapi.post(
        "/v1/auth/signup", {"email": "Ann@Example.COM", "password": PASSWORD, "name": "Ann"}
    )
    user = assert_answer(reply, "POST", "/v1/auth/signup")
    assert reply.status == 201
    assert user["email"] == "Ann@example.com"  # the domain is lowered, the local part kept
    assert user["role"] == "user"
    assert user["created_at"] == user["updated_at"]
    again = await dapi.post(
        "/v1/auth/signup", {"email": "Ann@example.com", "password": PASSWORD, "name": "Ann"}
    )
    assert detail(again, 400) == "Email already registered"


@pytest.mark.asyncio
async def test_signup_validates_like_pydantic(dapi: Api) -> None:
    reply = await dapi.post("/v1/auth/signup", {"email": "not-an-email", "password": "short"})
    assert reply.status == 422
    assert [(i["type"], i["loc"]) for i in reply.body["detail"]] == [
        ("value_error", ["body", "email"]),
        ("string_too_short", ["body", "password"]),
        ("missing", ["body", "name"]),
    ]
    assert reply.body["detail"][0]["msg"] == (
        "value is not a valid email address: An email address must have an @-sign."
    )
    no_period = await dapi.post(
        "/v1/auth/signup", {"email": "a@localhost", "password": PASSWORD, "name": "A"}
    )
    assert no_period.body["detail"][0]["ctx"] == {
        "reason": "The part after the @-sign is not valid. It should have a period."
    }


@pytest.mark.asyncio
async def test_login_answers_a_token_with_sub_email_and_exp(dapi: Api) -> None:
    await dapi.post(
        "/v1/auth/signup", {"email": "bo@example.com", "password": PASSWORD, "name": "Bo"}
    )
    reply = await dapi.post("/v1/auth/login", {"email": "bo@example.com", "password": PASSWORD})
    token = assert_answer(reply, "POST", "/v1/auth/login")
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 86_400
    payload = token["access_token"].split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(claims) == {"sub", "email", "exp"}
    assert claims["email"] == "bo@example.com"
    me = await dapi.as_token(token["access_token"]).get("/v1/auth/me")
    assert assert_answer(me, "GET", "/v1/auth/me")["id"] == claims["sub"]


@pytest.mark.asyncio
async def test_login_failures_and_the_exact_address(dapi: Api) -> None:
    await _signup(dapi, "Cy@example.com")
    wrong = await dapi.post("/v1/auth/login", {"email": "Cy@example.com", "password": "nope"})
    assert detail(wrong, 401) == "Invalid email or password"
    assert "WWW-Authenticate" not in wrong.headers
    other_case = await dapi.post(
        "/v1/auth/login", {"email": "cy@example.com", "password": PASSWORD}
    )
    assert detail(other_case, 401) == "Invalid email or password"


@pytest.mark.asyncio
async def test_five_failed_logins_lock_the_address(dapi: Api) -> None:
    await _signup(dapi, "dee@example.com")
    for _ in range(5):
        failed = await dapi.post("/v1/auth/login", {"email": "dee@example.com", "password": "x"})
        assert failed.status == 401
    locked = await dapi.post("/v1/auth/login", {"email": "dee@example.com", "password": PASSWORD})
    assert detail(locked, 429) == "Account temporarily locked. Try again in 15 minutes."
    assert "Retry-After" not in locked.headers
    elsewhere = await dapi.post("/v1/auth/login", {"email": "demo@gagiteck.local", "password": "x"})
    assert elsewhere.status == 401


@pytest.mark.parametrize(
    ("header", "message", "challenge"),
    [
        (None, "Not authenticated", True),
        ("Basic dXNlcjpwYXNz", "Not authenticated", True),
        ("Bearer", "Not authenticated", True),
        ("Bearer ggt_not_a_key", "Invalid API key", False),
        ("Bearer not.a.token", "Invalid token", False),
    ],
)
@pytest.mark.asyncio
async def test_bad_credentials_on_secured_routes(
    dapi: Api, header: str | None, message: str, challenge: bool
) -> None:
    headers = {} if header is None else {"Authorization": header}
    reply = await dapi.get("/v1/auth/me", headers=headers)
    assert detail(reply, 401) == message
    assert ("WWW-Authenticate" in reply.headers) == challenge
    if challenge:
        assert reply.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.asyncio
async def test_only_the_auth_routes_take_a_credential(dapi: Api) -> None:
    for path in ("/v1/agents", "/v1/workflows", "/v1/executions", "/v1/webhooks"):
        assert (await dapi.get(path)).status == 200, path
        garbage = await dapi.get(path, headers={"Authorization": "Bearer garbage"})
        assert garbage.status == 200, path
    assert (await dapi.get("/v1/auth/api-keys")).status == 401


@pytest.mark.asyncio
async def test_open_mode_stands_in_for_a_missing_or_unknown_credential() -> None:
    async with running_emulator(deployed_config(open_mode=True)) as running:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            api = Api(session, running.url)
            me = await api.get("/v1/auth/me")
            assert me.body["email"] == "demo@gagiteck.local"
            unknown = await api.get("/v1/auth/me", headers={"Authorization": "Bearer ggt_nope"})
            assert unknown.body["email"] == "demo@gagiteck.local"
            basic = await api.get("/v1/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
            assert detail(basic, 401) == "Not authenticated"


@pytest.mark.asyncio
async def test_profile_update(dapi: Api) -> None:
    user = await _signup(dapi, "eve@example.com", "Eve")
    before = (await user.get("/v1/auth/me")).body
    renamed = await user.patch("/v1/auth/me", {"name": "Eva", "email": "x@example.com"})
    body = assert_answer(renamed, "PATCH", "/v1/auth/me")
    assert (body["name"], body["email"]) == ("Eva", "eve@example.com")
    assert body["updated_at"] > before["updated_at"]
    unchanged = (await user.patch("/v1/auth/me", {"name": ""})).body
    assert unchanged["name"] == "Eva"
    assert unchanged["updated_at"] > body["updated_at"]
    missing = await user.call("PATCH", "/v1/auth/me")
    assert missing.status == 422
    assert missing.body["detail"][0]["loc"] == ["body"]


@pytest.mark.asyncio
async def test_password_change(dapi: Api) -> None:
    user = await _signup(dapi, "flo@example.com")
    wrong = await user.post(
        "/v1/auth/me/password", {"current_password": "nope", "new_password": "new-password"}
    )
    assert detail(wrong, 401) == "Current password is incorrect"
    assert "WWW-Authenticate" not in wrong.headers
    short = await user.post(
        "/v1/auth/me/password", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert short.body["detail"][0]["loc"] == ["body", "new_password"]
    changed = await user.post(
        "/v1/auth/me/password", {"current_password": PASSWORD, "new_password": "new-password"}
    )
    assert assert_answer(changed, "POST", "/v1/auth/me/password")["email"] == "flo@example.com"
    old = await dapi.post("/v1/auth/login", {"email": "flo@example.com", "password": PASSWORD})
    assert old.status == 401
    new = await dapi.post(
        "/v1/auth/login", {"email": "flo@example.com", "password": "new-password"}
    )
    assert new.status == 200


@pytest.mark.asyncio
async def test_api_keys_are_a_bare_list_showing_prefixes(dkey: Api, dapi: Api) -> None:
    created = await dkey.post("/v1/auth/api-keys", {"name": "ci"})
    key = assert_answer(created, "POST", "/v1/auth/api-keys")
    assert created.status == 201
    assert re.fullmatch(r"ggt_[0-9a-f]{32}", key["key"])
    listed = await dkey.get("/v1/auth/api-keys?limit=0&offset=-3")
    keys = assert_answer(listed, "GET", "/v1/auth/api-keys")
    assert [k["name"] for k in keys] == ["preset key 1", "ci"]
    assert keys[0]["key"] == DEMO_KEY[:12] + "..."
    assert keys[1]["key"] == key["key"][:12] + "..."
    with_new = dapi.as_token(key["key"])
    assert (await with_new.get("/v1/auth/me")).status == 200
    deleted = await dkey.delete(f"/v1/auth/api-keys/{key['id']}")
    assert deleted.status == 204
    assert deleted.raw == b""
    assert detail(await with_new.get("/v1/auth/me"), 401) == "Invalid API key"
    assert detail(await dkey.delete(f"/v1/auth/api-keys/{key['id']}"), 404) == "API key not found"


@pytest.mark.asyncio
async def test_another_users_key_cannot_be_deleted(dkey: Api, dapi: Api) -> None:
    other = await _signup(dapi, "gil@example.com")
    key = (await other.post("/v1/auth/api-keys", {"name": "mine"})).body
    assert detail(await dkey.delete(f"/v1/auth/api-keys/{key['id']}"), 404) == "API key not found"
    assert [k["name"] for k in (await other.get("/v1/auth/api-keys")).body] == ["mine"]
