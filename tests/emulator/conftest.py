"""Fixtures: a real emulator on port 0, a client session, API helpers, a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from gateway.emulator import RunningEmulator, running_emulator

from .deployed_testkit import DEPLOYED
from .emulator_testkit import DEMO_KEY, FAST, PASSWORD, Api, Receiver, SignUp, serve_receiver


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(FAST) as running:
        yield running


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def anon(emulator: RunningEmulator, session: aiohttp.ClientSession) -> Api:
    return Api(session, emulator.url)


@pytest.fixture
def api(anon: Api) -> Api:
    """The demo user, through the preset API key."""
    return anon.as_token(DEMO_KEY)


@pytest.fixture
def new_user(anon: Api) -> SignUp:
    """Sign a user up, log in, and return an `Api` holding the JWT."""
    counter = iter(range(1, 1000))

    async def make(email: str | None = None, password: str = PASSWORD) -> Api:
        address = email or f"user{next(counter)}@example.com"
        created = await anon.post(
            "/v1/auth/signup", {"email": address, "password": password, "name": "U"}
        )
        assert created.status == 201, created.body
        login = await anon.post("/v1/auth/login", {"email": address, "password": password})
        assert login.status == 200, login.body
        return anon.as_token(login.body["access_token"])

    return make


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target, runner = await serve_receiver()
    try:
        yield target
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def deployed() -> AsyncIterator[RunningEmulator]:
    """An emulator speaking the deployed dialect."""
    async with running_emulator(DEPLOYED) as running:
        yield running


@pytest.fixture
def dapi(deployed: RunningEmulator, session: aiohttp.ClientSession) -> Api:
    """The deployed dialect without a credential (most of its routes take none)."""
    return Api(session, deployed.url)


@pytest.fixture
def dkey(dapi: Api) -> Api:
    """The deployed dialect as the demo user, through the preset API key."""
    return dapi.as_token(DEMO_KEY)
