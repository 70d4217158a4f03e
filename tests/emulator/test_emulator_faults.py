"""Fault knobs: latency, errors, drops (before / after committing), malformed answers."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from gateway.emulator import EmulatorConfig, Faults, RunningEmulator, running_emulator

from .emulator_testkit import Api


async def _statuses(api: Api, count: int) -> list[int]:
    return [(await api.get("/v1/agents")).status for _ in range(count)]


@pytest.mark.asyncio
async def test_latency_and_jitter(api: Api) -> None:
    await api.post("/_emulator/faults", {"latency_seconds": 0.15, "jitter_seconds": 0.05})
    started = time.perf_counter()
    await api.get("/v1/agents")
    assert time.perf_counter() - started >= 0.15
    await api.post("/_emulator/faults", {})
    await api.get("/v1/agents")
    assert (await api.get("/_emulator/stats")).body["faults_injected"] == {"latency": 1}


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SERVICE_UNAVAILABLE"), (500, "INTERNAL_ERROR"), (429, "RATE_LIMITED")],
)
@pytest.mark.asyncio
async def test_error_injection_uses_the_documented_body(api: Api, status: int, code: str) -> None:
    await api.post("/_emulator/faults", {"error_rate": 1.0, "error_status": status})
    reply = await api.get("/v1/agents")
    assert reply.status == status
    assert reply.body["code"] == code
    assert reply.body["status"] == status
    assert ("Retry-After" in reply.headers) is (status == 429)
    assert "X-RateLimit-Limit" in reply.headers


@pytest.mark.asyncio
async def test_path_filter_limits_faults(api: Api) -> None:
    await api.post("/_emulator/faults", {"error_rate": 1.0, "paths": "^/v1/workflows"})
    assert (await api.get("/v1/agents")).status == 200
    assert (await api.get("/v1/workflows")).status == 503
    assert (await api.get("/_emulator/stats")).status == 200


@pytest.mark.asyncio
async def test_seeded_faults_are_reproducible(api: Api) -> None:
    faults = {"error_rate": 0.5, "seed": 7}
    await api.post("/_emulator/faults", faults)
    first = await _statuses(api, 20)
    await api.post("/_emulator/faults", faults)
    second = await _statuses(api, 20)
    assert first == second
    assert set(first) == {200, 503}


@pytest.mark.asyncio
async def test_drop_before_commits_nothing(api: Api, emulator: RunningEmulator) -> None:
    await api.post("/_emulator/faults", {"drop_rate": 1.0, "drop_mode": "before"})
    with pytest.raises(aiohttp.ClientError):
        await api.post("/v1/agents", {"name": "lost"})
    await api.post("/_emulator/faults", {})
    assert emulator.state.stats.creations["agent"] == 0
    assert (await api.get("/v1/agents")).body["total"] == 0
    log = (await api.get("/_emulator/requests?limit=3")).body["data"]
    dropped = [
        entry for entry in log if entry["path"] == "/v1/agents" and entry["method"] == "POST"
    ]
    assert dropped[0]["dropped"] is True
    assert dropped[0]["status"] is None


@pytest.mark.asyncio
async def test_drop_after_commits_the_effect(api: Api, emulator: RunningEmulator) -> None:
    await api.post("/_emulator/faults", {"drop_rate": 1.0, "drop_mode": "after"})
    with pytest.raises(aiohttp.ClientError):
        await api.post("/v1/agents", {"name": "committed"})
    await api.post("/_emulator/faults", {})
    assert emulator.state.stats.creations["agent"] == 1
    assert (await api.get("/v1/agents")).body["data"][0]["name"] == "committed"


@pytest.mark.asyncio
async def test_malformed_html(api: Api) -> None:
    await api.post("/_emulator/faults", {"malformed_rate": 1.0, "malformed_mode": "html"})
    reply = await api.get("/v1/agents")
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"502 Bad Gateway" in reply.raw


@pytest.mark.asyncio
async def test_malformed_truncated_json(api: Api, emulator: RunningEmulator) -> None:
    await api.post("/_emulator/faults", {"malformed_rate": 1.0, "malformed_mode": "truncated"})
    reply = await api.post("/v1/agents", {"name": "half"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(reply.raw)
    assert emulator.state.stats.creations["agent"] == 1


@pytest.mark.asyncio
async def test_method_filter(api: Api) -> None:
    await api.post("/_emulator/faults", {"error_rate": 1.0, "methods": ["POST"]})
    assert (await api.get("/v1/agents")).status == 200
    assert (await api.post("/v1/agents", {"name": "n"})).status == 503


@pytest.mark.asyncio
async def test_fault_settings_are_validated_and_readable(api: Api) -> None:
    bad = await api.post("/_emulator/faults", {"error_rate": 3})
    assert bad.status == 422
    assert bad.body["detail"][0]["loc"] == ["body", "error_rate"]
    regex = await api.post("/_emulator/faults", {"paths": "("})
    assert regex.status == 422
    await api.post("/_emulator/faults", {"latency_seconds": 0.01})
    current = (await api.get("/_emulator/faults")).body
    assert current == {**Faults().to_json(), "latency_seconds": 0.01}


@pytest.mark.asyncio
async def test_configured_faults_apply_from_start_and_after_reset() -> None:
    config = EmulatorConfig(open_mode=True, faults=Faults(error_rate=1.0, error_status=502))
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        async with session.get(running.url + "/v1/agents") as response:
            assert response.status == 502
            assert (await response.json())["code"] == "BAD_GATEWAY"
        async with session.post(running.url + "/_emulator/faults", json={}) as response:
            assert response.status == 200
        async with session.get(running.url + "/v1/agents") as response:
            assert response.status == 200
        async with session.post(running.url + "/_emulator/reset") as response:
            assert response.status == 204
        async with session.get(running.url + "/v1/agents") as response:
            assert response.status == 502
        assert running.state.stats_json()["faults_injected"] == {"error": 1}
