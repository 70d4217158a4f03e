"""Open mode takes any bearer value, so that the documented placeholder works on a first call.

A request without a credential, or with a bearer value that is no known key or valid token
(`Bearer ggt_your_key`, garbage, a forged or expired token), acts as the demo user; a known
credential still acts as its own user; a header of another scheme is refused. Without open
mode every one of those is 401, as before. Both dialects.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.emulator.auth import encode_jwt

from .deployed_testkit import DEPLOYED
from .emulator_testkit import FAST, JWT_SECRET, PASSWORD, Api

DEMO_EMAIL = "demo@gagiteck.local"
CONFIGS = {"reference": FAST, "deployed": DEPLOYED}

# /v1/auth/me asks for a credential in both dialects.
ME = "/v1/auth/me"

UNKNOWN_BEARERS = {
    "placeholder": "Bearer ggt_your_key",
    "garbage": "Bearer not-a-credential",
    "jwt-shaped": "Bearer a.b.c",
    "forged-jwt": "Bearer "
    + encode_jwt(
        {"sub": "user_x", "email": "x@example.com", "exp": int(time.time()) + 60},
        "another-secret-0123456789",
    ),
    "expired-jwt": "Bearer "
    + encode_jwt({"sub": "user_x", "email": "x@example.com", "exp": 1}, JWT_SECRET),
    "lower-case-scheme": "bearer ggt_your_key",
}


async def _api(config: EmulatorConfig) -> AsyncIterator[Api]:
    async with running_emulator(config) as emulator, aiohttp.ClientSession() as session:
        yield Api(session, emulator.url)


@pytest_asyncio.fixture(params=sorted(CONFIGS))
async def open_api(request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    async for api in _api(dataclasses.replace(CONFIGS[request.param], open_mode=True)):
        yield api


@pytest_asyncio.fixture(params=sorted(CONFIGS))
async def strict_api(request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    async for api in _api(CONFIGS[request.param]):
        yield api


@pytest.mark.parametrize("header", UNKNOWN_BEARERS.values(), ids=UNKNOWN_BEARERS.keys())
@pytest.mark.asyncio
async def test_an_unknown_bearer_acts_as_the_demo_user(open_api: Api, header: str) -> None:
    me = await open_api.get(ME, headers={"Authorization": header})
    assert me.status == 200, me.body
    assert me.body["email"] == DEMO_EMAIL


@pytest.mark.asyncio
async def test_no_credential_acts_as_the_demo_user(open_api: Api) -> None:
    me = await open_api.get(ME)
    assert me.status == 200, me.body
    assert me.body["email"] == DEMO_EMAIL


@pytest.mark.asyncio
async def test_the_placeholder_creates_in_the_demo_account(open_api: Api) -> None:
    placeholder = {"Authorization": "Bearer ggt_your_key"}
    created = await open_api.post(
        "/v1/agents", {"name": "Helper", "system_prompt": "You are terse."}, headers=placeholder
    )
    assert created.status == 201, created.body
    anonymous = await open_api.get(f"/v1/agents/{created.body['id']}")
    assert anonymous.status == 200, anonymous.body


@pytest.mark.asyncio
async def test_known_credentials_still_act_as_their_user(open_api: Api) -> None:
    body = {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}
    assert (await open_api.post("/v1/auth/signup", body)).status in {200, 201}
    login = await open_api.post("/v1/auth/login", {"email": body["email"], "password": PASSWORD})
    ann = open_api.as_token(login.body["access_token"])
    assert (await ann.get(ME)).body["email"] == "ann@example.com"
    key = (await ann.post("/v1/auth/api-keys", {"name": "ci"})).body["key"]
    assert (await open_api.as_token(key).get(ME)).body["email"] == "ann@example.com"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token ggt_your_key"])
@pytest.mark.asyncio
async def test_another_scheme_is_refused_in_open_mode_too(open_api: Api, header: str) -> None:
    assert (await open_api.get(ME, headers={"Authorization": header})).status == 401


@pytest.mark.parametrize(
    "header", [None, *UNKNOWN_BEARERS.values()], ids=["missing", *UNKNOWN_BEARERS.keys()]
)
@pytest.mark.asyncio
async def test_without_open_mode_each_is_refused(strict_api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert (await strict_api.get(ME, headers=headers)).status == 401
