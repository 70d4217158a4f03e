"""One caller cannot spend another's share: caller keys, watches and streams per caller,
idempotency keys per caller when the gateway's own key goes upstream (issue 12, items 3,
4 and 14; item 1 is pinned in tests/unit/traffic/test_limits.py and test_redis_limits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
import pytest_asyncio
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
)

from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.support.harness import details_of, serving_gateway

GATEWAY_KEY = "ggt_gateway_own_key"
CALLER_KEY = "ggt_a_caller"


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(
        open_mode=True, api_keys=(GATEWAY_KEY, CALLER_KEY), step_delay_seconds=30.0
    )
    async with running_emulator(config) as running:
        yield running


async def _list(stub: agent_pb2_grpc.AgentServiceAsyncStub, authorization: str | None) -> str:
    """The call's outcome: OK, or the reason of the gateway's refusal, or the code."""
    metadata = () if authorization is None else (("authorization", authorization),)
    try:
        await stub.ListAgents(agent_pb2.ListAgentsRequest(), metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        info = details_of(error).get("ErrorInfo")
        return info.reason if info is not None else error.code().name
    return "OK"


@pytest.mark.asyncio
async def test_one_credential_spelled_differently_is_one_caller(emulator: RunningEmulator) -> None:
    """Item 3: `bearer`, `BEARER` and extra spaces each had a fresh bucket."""
    async with serving_gateway(
        emulator.url, caller_rate_limit_rps=0.2, caller_rate_limit_burst=1
    ) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)
        assert await _list(stub, "Bearer ggt_alice") != "GATEWAY_RATE_LIMITED"
        for spelling in ("bearer ggt_alice", "BEARER   ggt_alice", "  Bearer ggt_alice "):
            assert await _list(stub, spelling) == "GATEWAY_RATE_LIMITED", spelling
        assert await _list(stub, "Bearer ggt_bob") != "GATEWAY_RATE_LIMITED"


@pytest.mark.asyncio
async def test_callers_without_a_credential_have_a_bucket(emulator: RunningEmulator) -> None:
    """Item 3: in passthrough-or-service mode a call without a credential went out with the
    gateway's key and no caller bucket at all."""
    async with serving_gateway(
        emulator.url,
        auth_mode="passthrough-or-service",
        upstream_api_key=GATEWAY_KEY,
        caller_rate_limit_rps=0.2,
        caller_rate_limit_burst=2,
    ) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)
        assert [await _list(stub, None) for _ in range(3)] == ["OK", "OK", "GATEWAY_RATE_LIMITED"]
        assert await _list(stub, f"Bearer {GATEWAY_KEY}") == "OK"  # a credential: its own


async def _execution(emulator: RunningEmulator, session: aiohttp.ClientSession) -> str:
    """A running execution, made straight on the emulator (not through the gateway)."""
    async with session.post(
        f"{emulator.url}/v1/workflows",
        json={"name": "slow", "steps": [{"id": "s", "type": "transform", "name": "s"}]},
    ) as answer:
        workflow = await answer.json()
    async with session.post(
        f"{emulator.url}/v1/workflows/{workflow['id']}/trigger", json={"input": {}}
    ) as answer:
        return str((await answer.json())["id"])


def _execution_gets(emulator: RunningEmulator) -> int:
    return sum(
        1
        for r in emulator.state.requests.last(10_000)
        if r["method"] == "GET" and r["path"].startswith("/v1/executions/")
    )


@pytest.mark.asyncio
async def test_a_callers_watches_poll_within_its_rate(emulator: RunningEmulator) -> None:
    """Item 4: 20 watches of a 1/s caller made ~119 upstream GETs in 4 s."""
    async with aiohttp.ClientSession() as session:
        ids = [await _execution(emulator, session) for _ in range(20)]
    async with serving_gateway(
        emulator.url,
        caller_rate_limit_rps=1,
        caller_rate_limit_burst=1,
        watch_min_interval=0.05,
        watch_max_interval=0.1,
    ) as running:
        stub = execution_pb2_grpc.ExecutionServiceStub(running.channel)
        watches = [
            stub.WatchExecution(execution_pb2.WatchExecutionRequest(execution_id=i), timeout=30)
            for i in ids
        ]
        before = _execution_gets(emulator)
        await asyncio.sleep(4.0)
        polled = _execution_gets(emulator) - before
        for watch in watches:
            watch.cancel()
    # the burst, then one a second (a little slack for the instants at the edges)
    assert polled <= 1 + 4 + 1, polled


@pytest.mark.asyncio
async def test_a_caller_holds_a_bounded_number_of_watches(emulator: RunningEmulator) -> None:
    """Item 4: no cap on the watches or streams one caller holds open."""
    async with aiohttp.ClientSession() as session:
        ids = [await _execution(emulator, session) for _ in range(4)]
    async with serving_gateway(emulator.url, caller_max_streams=3) as running:
        stub = execution_pb2_grpc.ExecutionServiceStub(running.channel)
        mine = [
            stub.WatchExecution(
                execution_pb2.WatchExecutionRequest(execution_id=i),
                metadata=(("authorization", f"Bearer {CALLER_KEY}"),),
                timeout=30,
            )
            for i in ids[:3]
        ]
        for watch in mine:
            await watch.read()  # each is open: its first snapshot came
        one_more = stub.WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=ids[3]),
            metadata=(("authorization", f"Bearer {CALLER_KEY}"),),
            timeout=30,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await one_more.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        found = details_of(caught.value)
        assert found["ErrorInfo"].reason == "GATEWAY_STREAM_LIMIT"
        assert found["QuotaFailure"].violations[0].subject.startswith("caller:")
        # another caller is not held back; and ending one watch frees a place
        other = stub.WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=ids[3]), timeout=30
        )
        await other.read()
        mine[0].cancel()
        await asyncio.sleep(0.1)
        again = stub.WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=ids[3]),
            metadata=(("authorization", f"Bearer {CALLER_KEY}"),),
            timeout=30,
        )
        await again.read()
        for watch in [*mine, other, again]:
            watch.cancel()


@pytest.mark.asyncio
async def test_idempotency_keys_are_per_caller_when_the_gateways_key_goes_up(
    emulator: RunningEmulator,
) -> None:
    """Item 14: in service mode two callers sending the same idempotency key shared one
    stored answer upstream (the gateway's account): one got the other's agent."""
    async with serving_gateway(
        emulator.url, auth_mode="service", upstream_api_key=GATEWAY_KEY
    ) as running:
        stub = agent_pb2_grpc.AgentServiceStub(running.channel)

        async def create(caller: str, name: str) -> agent_pb2.Agent:
            return await stub.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name=name, system_prompt="p")),
                metadata=(("authorization", f"Bearer {caller}"), ("idempotency-key", "k-1")),
                timeout=5,
            )

        alice = await create("alice-token", "same")
        bob = await create("bob-token", "same")
        assert alice.id != bob.id  # each caller's key is its own
        again = await create("alice-token", "same")
        assert again.id == alice.id  # and a caller's retry still finds its own answer
        sent = {
            r["headers"].get("idempotency-key")
            for r in emulator.state.requests.last(100)
            if r["method"] == "POST" and r["path"] == "/v1/agents"
        }
        assert len(sent) == 2
        assert "k-1" not in sent
