"""Standard headers on every answer, the request window, the in-flight ceiling."""

from __future__ import annotations

import io
import json
import time

import aiohttp
import pytest

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.emulator.limits import ConcurrencyLimiter, RateLimiter

from .emulator_testkit import Api, read_events

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/agents", 200),
        ("GET", "/v1/agents/agent_none", 404),
        ("GET", "/v1/agents?limit=0", 422),
        ("GET", "/v1/unknown", 404),
        ("GET", "/_emulator/health", 200),
    ],
)
@pytest.mark.asyncio
async def test_every_answer_has_the_standard_headers(
    api: Api, method: str, path: str, expected: int
) -> None:
    reply = await api.call(method, path)
    assert reply.status == expected
    for header in RATE_HEADERS:
        assert reply.headers[header].isdigit()
    assert int(reply.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert reply.headers["X-Request-ID"]


@pytest.mark.asyncio
async def test_unauthorized_answers_carry_them_too(anon: Api) -> None:
    reply = await anon.get("/v1/agents")
    assert reply.status == 401
    assert all(header in reply.headers for header in RATE_HEADERS)


@pytest.mark.asyncio
async def test_request_id_is_echoed_or_generated(api: Api) -> None:
    echoed = await api.get("/v1/agents", headers={"X-Request-ID": "req-42"})
    assert echoed.headers["X-Request-ID"] == "req-42"
    first, second = await api.get("/v1/agents"), await api.get("/v1/agents")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.asyncio
async def test_window_limit_answers_429_with_retry_after() -> None:
    config = EmulatorConfig(open_mode=True, rate_limit_per_window=3, rate_window_seconds=30)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        remaining = []
        for _ in range(3):
            async with session.get(running.url + "/v1/agents") as response:
                assert response.status == 200
                assert response.headers["X-RateLimit-Limit"] == "3"
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]
        async with session.get(running.url + "/v1/agents") as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert await response.json() == {
                "detail": "Rate limit exceeded",
                "code": "RATE_LIMITED",
                "status": 429,
            }
        headers = {"Authorization": "Bearer ggt_other_credential"}
        async with session.get(running.url + "/v1/agents", headers=headers) as response:
            assert response.status == 200, "another credential has its own window"
        assert running.state.stats.rate_limited == 1


@pytest.mark.asyncio
async def test_concurrency_limit_answers_429() -> None:
    config = EmulatorConfig(open_mode=True, concurrency_limit=1, stream_delay_seconds=0.02)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        async with session.post(running.url + "/v1/agents", json={"name": "slow"}) as response:
            agent = await response.json()
        url = f"{running.url}/v1/agents/{agent['id']}/run"
        async with session.post(url, json={"message": "a long question", "stream": True}) as stream:
            assert (await anext(read_events(stream))).name == "run.started"
            async with session.get(running.url + "/v1/agents") as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == "1"
                assert (await response.json())["code"] == "RATE_LIMITED"
            await stream.read()
        async with session.get(running.url + "/v1/agents") as response:
            assert response.status == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_window_opens_with_the_first_request_and_resets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 2, 10.0, clock)
    assert [limiter.hit("k").remaining for _ in range(2)] == [1, 0]
    refused = limiter.hit("k")
    assert (refused.allowed, refused.retry_after, refused.reset) == (False, 10, 1_010)
    assert limiter.hit("other").allowed
    clock.now += 9.5
    assert limiter.hit("k").retry_after == 1
    clock.now += 0.5
    fresh = limiter.hit("k")
    assert (fresh.allowed, fresh.remaining, fresh.reset) == (True, 1, 1_020)


def test_unlimited_windows_count_but_never_refuse() -> None:
    limiter = RateLimiter(None, 1_000_000, 60.0, FakeClock())
    quotas = [limiter.hit("k") for _ in range(5)]
    assert all(quota.allowed for quota in quotas)
    assert quotas[-1].remaining == 999_995
    assert limiter.peek("k").remaining == 999_995


def test_in_flight_ceiling() -> None:
    ceiling = ConcurrencyLimiter(2)
    assert ceiling.acquire("k")
    assert ceiling.acquire("k")
    assert not ceiling.acquire("k")
    ceiling.release("k")
    assert ceiling.acquire("k")
    assert ceiling.in_flight("k") == 2


@pytest.mark.parametrize(("limit", "expected"), [(1024 * 1024, 413), (4 * 1024 * 1024, 201)])
@pytest.mark.asyncio
async def test_the_body_limit_is_configurable(limit: int, expected: int) -> None:
    """Issue 13: the embedded emulator refused bodies above aiohttp's 1 MiB while the
    gateway sent up to its own limit."""
    config = EmulatorConfig(open_mode=True, max_body_bytes=limit)
    body = {"name": "big", "system_prompt": "x" * (2 * 1024 * 1024)}
    async with (
        running_emulator(config) as emulator,
        aiohttp.ClientSession() as session,
        session.post(
            f"{emulator.url}/v1/agents",
            data=io.BytesIO(json.dumps(body).encode()),
            headers={"Content-Type": "application/json"},
        ) as reply,
    ):
        assert reply.status == expected
