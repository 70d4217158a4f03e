"""The `/_emulator/` test controls: stats, the request log, reset."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator

from .emulator_testkit import Api, read_events


@pytest.mark.asyncio
async def test_stats_count_requests_per_route(api: Api) -> None:
    agent = (await api.post("/v1/agents", {"name": "a"})).body
    await api.get(f"/v1/agents/{agent['id']}")
    await api.get("/v1/agents/agent_other")
    stats = (await api.get("/_emulator/stats")).body
    assert stats["requests"] == {"GET /v1/agents/{agent_id}": 2, "POST /v1/agents": 1}
    assert stats["requests_total"] == 3
    assert stats["creations"] == {"agent": 1}
    assert stats["open_streams"] == 0
    assert set(stats) >= {
        "idempotent_replays",
        "webhook_deliveries",
        "rate_limited",
        "faults_injected",
    }


@pytest.mark.asyncio
async def test_request_log_keeps_headers_but_never_credentials(api: Api) -> None:
    headers = {
        "X-Request-ID": "req-1",
        "Idempotency-Key": "idem-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "User-Agent": "gateway-test/1.0",
    }
    await api.post("/v1/auth/api-keys", {"name": "k"}, headers=headers)
    await api.post("/v1/auth/login", {"email": "demo@gagiteck.local", "password": "demo-password"})
    log = (await api.get("/_emulator/requests?limit=2")).body["data"]
    first, second = log
    assert first["method"] == "POST"
    assert first["route"] == "POST /v1/auth/api-keys"
    assert first["status"] == 201
    assert first["body"] == {"name": "k"}
    assert first["authorization_present"] is True
    assert first["headers"]["x-request-id"] == "req-1"
    assert first["headers"]["idempotency-key"] == "idem-1"
    assert first["headers"]["traceparent"].startswith("00-0af7")
    assert first["headers"]["user-agent"] == "gateway-test/1.0"
    assert second["body"] == {"email": "demo@gagiteck.local", "password": "***"}
    dumped = orjson.dumps(log).decode()
    assert api.token is not None
    assert api.token not in dumped
    assert "demo-password" not in dumped
    assert "authorization" not in {name.lower() for name in first["headers"]}


@pytest.mark.asyncio
async def test_request_log_limit_is_validated(api: Api) -> None:
    assert (await api.get("/_emulator/requests?limit=0")).status == 422


@pytest.mark.asyncio
async def test_reset_forgets_everything_but_the_presets(
    api: Api, emulator: RunningEmulator
) -> None:
    await api.post("/v1/agents", {"name": "gone"})
    await api.post("/_emulator/faults", {"latency_seconds": 0.01})
    assert (await api.post("/_emulator/reset")).status == 204
    assert (await api.get("/v1/agents")).body["total"] == 0
    stats = (await api.get("/_emulator/stats")).body
    assert stats["creations"] == {}
    assert stats["requests"] == {"GET /v1/agents": 1}
    assert (await api.get("/_emulator/faults")).body["latency_seconds"] == 0.0
    assert emulator.state.stats.requests_total == 1


@pytest.mark.asyncio
async def test_reset_ends_open_streams_and_running_executions() -> None:
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.05)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        api = Api(session, running.url)
        agent = (await api.post("/v1/agents", {"name": "a"})).body
        steps = [{"type": "delay", "config": {"seconds": 30}}]
        workflow = (await api.post("/v1/workflows", {"name": "w", "steps": steps})).body
        await api.post(f"/v1/workflows/{workflow['id']}/trigger", {})
        url = f"{running.url}/v1/agents/{agent['id']}/run"
        async with session.post(url, json={"message": "a b c d e f", "stream": True}) as response:
            stream = read_events(response)
            assert (await anext(stream)).name == "run.started"
            assert (await api.post("/_emulator/reset")).status == 204
            rest = [event async for event in stream]
        assert rest[-1].data["code"] == "CANCELLED"
        assert running.state.open_streams == 0
        assert running.state.execution_tasks == {}
        assert (await api.get("/_emulator/stats")).body["background_tasks"] == 0
