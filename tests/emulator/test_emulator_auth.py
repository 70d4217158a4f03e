"""AuthService: sign-up, login, JWTs, API keys, open mode, account scoping."""

from __future__ import annotations

import time

import aiohttp
import pytest

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from gateway.emulator.auth import encode_jwt

from .emulator_testkit import Api, SignUp

SECRET = "test-secret-0123456789abcdef"


@pytest.mark.asyncio
async def test_signup_answers_the_user_without_password(anon: Api) -> None:
    reply = await anon.post(
        "/v1/auth/signup", {"email": "Ann@Example.com", "password": "longenough", "name": "Ann"}
    )
    assert reply.status == 201
    user = reply.body
    assert set(user) == {"id", "email", "name", "role", "created_at"}
    assert user["id"].startswith("user_")
    assert user["email"] == "ann@example.com"
    assert user["role"] == "user"


@pytest.mark.asyncio
async def test_signup_twice_is_a_conflict(anon: Api) -> None:
    body = {"email": "dup@example.com", "password": "longenough", "name": "D"}
    assert (await anon.post("/v1/auth/signup", body)).status == 201
    reply = await anon.post("/v1/auth/signup", body)
    assert reply.status == 409
    assert reply.body == {
        "detail": "A user with this email already exists",
        "code": "CONFLICT",
        "status": 409,
    }


@pytest.mark.asyncio
async def test_signup_validates_in_fastapi_shape(anon: Api) -> None:
    reply = await anon.post("/v1/auth/signup", {"email": "not-an-email", "password": "short"})
    assert reply.status == 422
    issues = {tuple(item["loc"]): item["type"] for item in reply.body["detail"]}
    assert issues == {("body", "email"): "value_error", ("body", "password"): "string_too_short"}


@pytest.mark.asyncio
async def test_login_and_me_with_the_jwt(anon: Api, new_user: SignUp) -> None:
    user_api = await new_user("me@example.com")
    reply = await user_api.get("/v1/auth/me")
    assert reply.status == 200
    assert reply.body["email"] == "me@example.com"
    login = await anon.post(
        "/v1/auth/login", {"email": "me@example.com", "password": "correct-horse"}
    )
    assert login.body["token_type"] == "bearer"
    assert login.body["expires_in"] == 86_400
    assert login.body["access_token"].count(".") == 2


@pytest.mark.asyncio
async def test_bad_password_is_unauthorized(anon: Api, new_user: SignUp) -> None:
    await new_user("pw@example.com")
    reply = await anon.post(
        "/v1/auth/login", {"email": "pw@example.com", "password": "wrong-password"}
    )
    assert reply.status == 401
    assert reply.body["code"] == "UNAUTHORIZED"
    assert reply.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nonsense", "Basic abc", "Bearer ggt_unknown_key", "Bearer a.b.c"],
    ids=["missing", "garbage", "wrong-scheme", "unknown-key", "bad-jwt"],
)
@pytest.mark.asyncio
async def test_missing_or_bad_credentials_are_401(anon: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    reply = await anon.get("/v1/agents", headers=headers)
    assert reply.status == 401
    assert reply.body["code"] == "UNAUTHORIZED"
    assert reply.body["status"] == 401


@pytest.mark.asyncio
async def test_expired_and_tampered_tokens_are_refused(
    anon: Api, emulator: RunningEmulator
) -> None:
    user_id = emulator.state.demo_user.id
    expired = encode_jwt({"sub": user_id, "exp": int(time.time()) - 5}, SECRET)
    assert (await anon.as_token(expired).get("/v1/auth/me")).status == 401
    valid = encode_jwt({"sub": user_id, "exp": int(time.time()) + 60}, SECRET)
    assert (await anon.as_token(valid).get("/v1/auth/me")).status == 200
    forged = encode_jwt({"sub": user_id, "exp": int(time.time()) + 60}, "another-secret-0123456789")
    assert (await anon.as_token(forged).get("/v1/auth/me")).status == 401


@pytest.mark.asyncio
async def test_api_key_lifecycle(new_user: SignUp) -> None:
    user_api = await new_user()
    created = await user_api.post("/v1/auth/api-keys", {"name": "ci"})
    assert created.status == 201
    key = created.body["key"]
    assert key.startswith("ggt_")
    assert created.body["prefix"] == key[:12]
    listed = await user_api.get("/v1/auth/api-keys")
    assert listed.body["total"] == 1
    entry = listed.body["data"][0]
    assert "key" not in entry
    assert entry["prefix"] == key[:12]
    me = await user_api.as_token(key).get("/v1/auth/me")
    assert me.status == 200
    again = await user_api.get("/v1/auth/api-keys")
    assert again.body["data"][0]["last_used_at"] is not None
    deleted = await user_api.delete(f"/v1/auth/api-keys/{created.body['id']}")
    assert deleted.status == 204
    assert deleted.raw == b""
    assert (await user_api.as_token(key).get("/v1/auth/me")).status == 401
    assert (await user_api.delete(f"/v1/auth/api-keys/{created.body['id']}")).status == 404


@pytest.mark.asyncio
async def test_api_key_needs_a_name(api: Api) -> None:
    reply = await api.post("/v1/auth/api-keys", {})
    assert reply.status == 422
    assert reply.body["detail"][0]["loc"] == ["body", "name"]
    assert reply.body["detail"][0]["type"] == "missing"


@pytest.mark.asyncio
async def test_preset_key_belongs_to_the_demo_user(api: Api, emulator: RunningEmulator) -> None:
    reply = await api.get("/v1/auth/me")
    assert reply.body["id"] == emulator.state.demo_user.id
    assert reply.body["email"] == "demo@gagiteck.local"


@pytest.mark.asyncio
async def test_open_mode_acts_as_demo_user_for_a_missing_or_unknown_bearer() -> None:
    async with (
        running_emulator(EmulatorConfig(open_mode=True)) as running,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(running.url + "/v1/auth/me") as response:
            assert response.status == 200
            assert (await response.json())["id"] == running.state.demo_user.id
        headers = {"Authorization": "Bearer ggt_wrong"}
        async with session.get(running.url + "/v1/auth/me", headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["id"] == running.state.demo_user.id
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
        async with session.get(running.url + "/v1/auth/me", headers=headers) as response:
            assert response.status == 401


@pytest.mark.asyncio
async def test_data_is_scoped_per_account(new_user: SignUp) -> None:
    alice, bob = await new_user(), await new_user()
    agent = (await alice.post("/v1/agents", {"name": "private"})).body
    assert (await bob.get(f"/v1/agents/{agent['id']}")).status == 404
    assert (await bob.delete(f"/v1/agents/{agent['id']}")).status == 404
    assert (await bob.get("/v1/agents")).body["total"] == 0
    assert (await alice.get("/v1/agents")).body["total"] == 1
