"""Four gateway processes sharing one quota in Redis, offered four times that quota.

The emulator enforces a per-key limit just above the shared quota: when the gateways
spend the quota well, it never answers 429. Figures go to build/reliability/shared_quota.json.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from gateway.emulator import EmulatorConfig, running_emulator
from tests.integration.test_reliability import record
from tests.support.paths import REPO
from tests.support.redis_server import RedisServer, free_port

ROOT = REPO
RATE, BURST, PROCESSES, SECONDS = 40.0, 4.0, 4, 3.0
CREDENTIAL = "Bearer ggt_shared_quota_caller"


def _gateways(upstream: str, redis_url: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    processes, targets = [], []
    for _ in range(PROCESSES):
        target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "GATEWAY_LISTEN": target,
            "GATEWAY_UPSTREAM_URL": upstream,
            "GATEWAY_ADMIN_LISTEN": "off",
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_REPLICAS": str(PROCESSES),
            "GATEWAY_RATE_LIMIT_RPS": str(RATE),
            "GATEWAY_RATE_LIMIT_BURST": str(BURST),
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_SHUTDOWN_DELAY": "0",
        }
        processes.append(
            subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env)
        )
        targets.append(target)
    return processes, targets


async def _offer(
    target: str, rate: float, until: float, answered_at: list[float]
) -> tuple[int, int]:
    """Calls at ``rate`` per second until ``until``; (answered, not answered).

    A call is refused at once (RESOURCE_EXHAUSTED) when its wait would outlast its 0.25 s
    deadline; one admitted with a wait close to its deadline may still run out of time
    upstream (DEADLINE_EXCEEDED). The upstream's own count is what the quota is about.
    """
    admitted = refused = 0
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        agents = agent_pb2_grpc.AgentServiceStub(channel)
        request = agent_pb2.ListAgentsRequest(limit=1)

        async def one() -> None:
            nonlocal admitted, refused
            try:
                await agents.ListAgents(
                    request, metadata=(("authorization", CREDENTIAL),), timeout=0.25
                )
                admitted += 1
                answered_at.append(time.monotonic())
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
                refused += 1

        codes: list[grpc.StatusCode] = []
        tasks = []
        next_at = time.monotonic()
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            tasks.append(asyncio.ensure_future(one()))
            next_at += 1 / rate
        await asyncio.gather(*tasks)
    expected = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert set(codes) <= expected, set(codes) - expected
    return admitted, refused


@pytest.mark.slow
@pytest.mark.asyncio
async def test_four_processes_share_one_quota() -> None:
    emulator_config = EmulatorConfig(
        open_mode=False,
        api_keys=(CREDENTIAL.removeprefix("Bearer "),),
        rate_limit_per_window=int(RATE + 2 * BURST),
        rate_window_seconds=1.0,
    )
    with RedisServer() as redis:
        async with running_emulator(emulator_config) as emulator:
            processes, targets = _gateways(emulator.url, redis.url)
            try:
                for target in targets:  # all up before the clock starts
                    async with grpc.aio.insecure_channel(target) as channel:
                        await asyncio.wait_for(channel.channel_ready(), 30)
                before = emulator.state.stats.requests_total
                started = time.monotonic()
                answered_at: list[float] = []
                results = await asyncio.gather(
                    *(_offer(t, RATE, started + SECONDS, answered_at) for t in targets)
                )
                elapsed = time.monotonic() - started
                upstream = emulator.state.stats.requests_total - before
                upstream_429 = emulator.state.stats.rate_limited
            finally:
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                for process in processes:
                    process.wait(timeout=20)
    admitted = sum(a for a, _ in results)
    offered = sum(a + r for a, r in results)
    # Admissions go on for up to one deadline after the last offer: the quota of the span
    # in which calls were actually admitted is rate * span + burst.
    span = max(answered_at) - min(answered_at)
    quota = RATE * span + BURST
    record(
        "shared_quota",
        {
            "processes": PROCESSES,
            "quota_per_s": RATE,
            "burst": BURST,
            "seconds_offered": SECONDS,
            "seconds_admitting": span,
            "offered": offered,
            "answered": admitted,
            "quota": quota,
            "upstream_vs_quota": upstream / quota,
            "upstream_requests": upstream,
            "upstream_429": upstream_429,
            "elapsed_s": elapsed,
        },
    )
    assert offered >= 3.5 * quota
    assert upstream_429 == 0
    assert admitted <= upstream
    assert abs(upstream - quota) <= 0.02 * quota, f"{upstream} sent upstream for a quota of {quota}"
