"""Streaming runs: SSE vocabulary and order, cancel, heartbeats, client disconnects."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator

from .emulator_testkit import Api, read_events, wait_for

AGENT = {"name": "Calc", "system_prompt": "You are a precise calculator.", "tools": ["calculator"]}
STREAM = {"message": "What is 6 * 7?", "stream": True}


@pytest.mark.asyncio
async def test_events_arrive_in_order_and_match_the_unary_run(
    api: Api, session: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    agent = (await api.post("/v1/agents", AGENT)).body
    url = f"{emulator.url}/v1/agents/{agent['id']}/run"
    headers = {"Authorization": f"Bearer {api.token}"}
    async with session.post(url, json=STREAM, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "X-RateLimit-Limit" in response.headers
        received = [event async for event in read_events(response)]
    names = [event.name for event in received]
    assert names[0] == "run.started"
    assert names[1] == "tool.call"
    assert names[-2:] == ["usage", "run.completed"]
    assert set(names[2:-2]) == {"content.delta"}
    assert [event.id for event in received] == [str(n) for n in range(1, len(received) + 1)]
    started, completed = received[0].data, received[-1].data
    assert started == {
        "run_id": completed["id"],
        "agent_id": agent["id"],
        "model": "claude-3-sonnet",
    }
    assert received[1].data["result"] == 42
    assert "".join(event.data["delta"] for event in received[2:-2]) == completed["content"]
    assert received[-2].data == completed["usage"]
    unary = (await api.post(f"/v1/agents/{agent['id']}/run", {"message": STREAM["message"]})).body
    assert unary["content"] == completed["content"]
    assert unary["tool_calls"] == completed["tool_calls"]
    assert emulator.state.open_streams == 0


@pytest.mark.asyncio
async def test_stream_closes_when_the_client_goes_away() -> None:
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.05)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        async with session.post(running.url + "/v1/agents", json=AGENT) as response:
            agent = await response.json()
        response = await session.post(f"{running.url}/v1/agents/{agent['id']}/run", json=STREAM)
        stream = read_events(response)
        assert (await anext(stream)).name == "run.started"
        assert running.state.open_streams == 1
        response.close()
        await stream.aclose()

        async def closed() -> bool:
            return running.state.open_streams == 0

        await wait_for(closed, 2.0)
        assert running.state.active_runs == {}
        async with session.get(running.url + "/v1/executions") as listing:
            execution = (await listing.json())["data"][0]
        assert execution["status"] == "cancelled"
        assert execution["error"] == "The client disconnected"


@pytest.mark.asyncio
async def test_cancelling_a_streamed_run() -> None:
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.05)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        async with session.post(running.url + "/v1/agents", json=AGENT) as response:
            agent = await response.json()
        base = f"{running.url}/v1/agents/{agent['id']}"
        async with session.post(base + "/run", json=STREAM) as response:
            stream = read_events(response)
            started = await anext(stream)
            run_id = started.data["run_id"]
            async with session.post(f"{base}/runs/{run_id}/cancel", json={}) as cancel:
                assert cancel.status == 200
                assert (await cancel.json())["id"] == run_id
            rest = [event async for event in stream]
        assert rest[-1].name == "error"
        assert rest[-1].data == {
            "detail": "The run was cancelled",
            "code": "CANCELLED",
            "status": 499,
        }
        assert "run.completed" not in [event.name for event in rest]
        async with session.post(f"{base}/runs/{run_id}/cancel", json={}) as again:
            assert again.status == 404
            assert (await again.json())["code"] == "NOT_FOUND"
        assert running.state.open_streams == 0


@pytest.mark.asyncio
async def test_idle_streams_send_heartbeats() -> None:
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.12, heartbeat_seconds=0.03)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        body = {"name": "Short", "system_prompt": "Reply with 'ok done'"}
        async with session.post(running.url + "/v1/agents", json=body) as response:
            agent = await response.json()
        comments: list[str] = []
        url = f"{running.url}/v1/agents/{agent['id']}/run"
        async with session.post(url, json={"message": "hi", "stream": True}) as response:
            names = [event.name async for event in read_events(response, comments)]
        assert names == ["run.started", "content.delta", "content.delta", "usage", "run.completed"]
        assert comments
        assert set(comments) == {": ping"}


@pytest.mark.asyncio
async def test_stream_errors_before_starting_are_plain_json(api: Api) -> None:
    reply = await api.post("/v1/agents/agent_missing/run", STREAM)
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/json")
