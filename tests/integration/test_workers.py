"""GATEWAY_WORKERS: several processes on one port, all serving, all stopping together, and
one admin port answering for all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.emulator import EmulatorConfig, running_emulator
from tests.support.paths import REPO
from tests.support.redis_server import RedisServer, free_port
from tests.support.workflows import triggered_execution

ROOT = REPO


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cpu(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.slow
@pytest.mark.asyncio
async def test_two_workers_share_the_port_and_stop_together() -> None:
    async with running_emulator(EmulatorConfig(open_mode=True)) as emulator:
        target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "GATEWAY_WORKERS": "2",
            "GATEWAY_LISTEN": target,
            "GATEWAY_UPSTREAM_URL": emulator.url,
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
            "GATEWAY_SHUTDOWN_DELAY": "0",
            "GATEWAY_ACCESS_LOG": "false",
        }
        parent = subprocess.Popen(  # noqa: ASYNC220 - a process to test, not I/O to await
            [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env
        )
        try:
            for _ in range(600):  # both workers forked: at most 30 s
                if len(_children(parent.pid)) >= 2:
                    break
                await asyncio.sleep(0.05)
            workers = _children(parent.pid)
            assert len(workers) == 2
            before = {pid: _cpu(pid) for pid in workers}
            for _ in range(30):  # a new connection each time: the kernel spreads them
                async with grpc.aio.insecure_channel(target) as channel:
                    await channel.channel_ready()
                    agents = agent_pb2_grpc.AgentServiceStub(channel)
                    for _ in range(20):
                        await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10)
            busy = [pid for pid in workers if _cpu(pid) > before[pid]]
            assert len(busy) == 2, "one worker took every connection"
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(timeout=30) == 0
            assert not set(workers) & set(_all_pids())
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()


# -- the admin port answers for the pod (issue 13)

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
LIST_AGENTS = {"grpc_service": "gagiteck.v1.AgentService", "grpc_method": "ListAgents"}


def _sample_sum(text: str, sample: str, **labels: str) -> float:
    """The sum of ``sample``'s values whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def _rpcs(text: str) -> float:
    return _sample_sum(text, "gateway_rpc_duration_seconds_count", **LIST_AGENTS)


class Pod:
    """``gagiteck-gateway serve`` with two workers, as a process to test."""

    def __init__(self, upstream_url: str, tmp_path: Path, **settings: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self.admin = f"http://127.0.0.1:{free_port()}"
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "TMPDIR": str(tmp_path),  # where the parent makes the workers' private sockets
            "GATEWAY_WORKERS": "2",
            "GATEWAY_LISTEN": self.target,
            "GATEWAY_UPSTREAM_URL": upstream_url,
            "GATEWAY_ADMIN_LISTEN": self.admin.removeprefix("http://"),
            "GATEWAY_SHUTDOWN_DELAY": "0",
            "GATEWAY_ACCESS_LOG": "false",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Pod:
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a process to test, not I/O to await
            [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=self.env
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(600):  # every worker ready: at most 30 s
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.admin}/readyz") as answer:
                        if answer.status == 200:
                            return self
                assert self.process.poll() is None, "the gateway exited at start"
                await asyncio.sleep(0.05)
        pytest.fail("the pod never became ready")

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def worker_sockets(self) -> list[Path]:
        return sorted(self.tmp_path.glob("gagiteck-gateway-*/worker-*.sock"))

    async def get(self, session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with session.get(f"{self.admin}{path}") as answer:
            return answer.status, await answer.text()


async def _worker_metrics(path: Path) -> str:
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://worker/metrics") as answer,
    ):
        assert answer.status == 200
        return await answer.text()


async def _list_agents_on_new_connections(target: str, connections: int, calls: int) -> int:
    for _ in range(connections):  # a new connection each time: the kernel spreads them
        async with grpc.aio.insecure_channel(target) as channel:
            agents = agent_pb2_grpc.AgentServiceStub(channel)
            for _ in range(calls):
                await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10)
    return connections * calls


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_admin_port_answers_for_every_worker(tmp_path: Path) -> None:
    """Issue 13: each scrape saw one worker, so counters seemed to reset between scrapes."""
    async with (
        running_emulator(EmulatorConfig(open_mode=True)) as emulator,
        Pod(emulator.url, tmp_path, GATEWAY_SHUTDOWN_DELAY="1") as pod,
        aiohttp.ClientSession() as session,
    ):
        made = await _list_agents_on_new_connections(pod.target, 30, 5)
        sockets = pod.worker_sockets()
        assert len(sockets) == 2
        assert oct(sockets[0].parent.stat().st_mode & 0o777) == "0o700"
        each = [_rpcs(await _worker_metrics(path)) for path in sockets]
        assert all(count > 0 for count in each), f"one worker took every call: {each}"
        for _ in range(6):  # scrape after scrape: the pod's total, never a worker's
            status, text = await pod.get(session, "/metrics")
            assert status == 200
            assert _rpcs(text) == made == sum(each)
        limit = _sample_sum(text, "gateway_upstream_connections_limit", pool="unary")
        assert limit == 2 * 64  # gauges of capacity add up
        assert _sample_sum(text, "gateway_build_info") == 1  # info series: the largest
        breaker = _sample_sum(text, "gateway_circuit_breaker_state", breaker="upstream")
        assert breaker == 1  # a state set: the largest per state, both workers closed
        made += await _list_agents_on_new_connections(pod.target, 10, 3)
        status, text = await pod.get(session, "/metrics")
        assert _rpcs(text) == made
        assert (await pod.get(session, "/healthz"))[0] == 200
        assert (await pod.get(session, "/readyz"))[0] == 200
        async with session.post(f"{pod.admin}/internal/wake", data=b"{}") as answer:
            assert answer.status in (404, 405)  # the workers' private endpoint only
        # SIGTERM: not ready at once, while the workers still serve for the shutdown delay
        assert pod.process is not None
        pod.process.send_signal(signal.SIGTERM)
        assert (await pod.get(session, "/readyz"))[0] == 503
        assert pod.process.wait(timeout=30) == 0
    left = list(tmp_path.glob("gagiteck-gateway-*"))  # noqa: ASYNC240 - a test's tmp_path
    assert not left, "the private directory was left"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_webhook_wakes_the_watches_of_every_worker(tmp_path: Path) -> None:
    """Polling is slowed to 30 s; only the webhook, verified once and sent on to every
    worker, can end the watches held by both workers within seconds."""
    secret = "whsec_pod_end_to_end"
    slow_polls = {
        "GATEWAY_WATCH_MIN_INTERVAL": "30",
        "GATEWAY_WATCH_MAX_INTERVAL": "30",
        "GATEWAY_WATCH_SAFETY_INTERVAL": "30",
    }
    config = EmulatorConfig(open_mode=True, step_delay_seconds=1.0)
    with RedisServer() as redis:
        async with (
            running_emulator(config) as emulator,
            Pod(
                emulator.url,
                tmp_path,
                GATEWAY_WEBHOOK_SECRET=secret,
                GATEWAY_REDIS_URL=redis.url,
                **slow_polls,
            ) as pod,
            aiohttp.ClientSession() as session,
            grpc.aio.insecure_channel(pod.target) as channel,
        ):
            await webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhook(
                webhook_pb2.CreateWebhookRequest(
                    webhook=webhook_pb2.Webhook(
                        url=f"{pod.admin}/webhooks/gagiteck",
                        events=["execution.completed"],
                        secret=secret,
                    )
                ),
                timeout=5,
            )
            execution_id = await triggered_execution(channel, steps=4)
            started = time.monotonic()
            channels: list[grpc.aio.Channel] = []
            watches = []
            try:
                while len(channels) < 30:  # until both workers hold a watch of it
                    # a connection of its own, not the process's shared one to the target
                    watch_channel = grpc.aio.insecure_channel(pod.target, options=OWN_CONNECTION)
                    channels.append(watch_channel)
                    watch = execution_pb2_grpc.ExecutionServiceStub(watch_channel).WatchExecution(
                        execution_pb2.WatchExecutionRequest(execution_id=execution_id), timeout=25
                    )
                    first = await watch.read()
                    assert isinstance(first, execution_pb2.Execution)
                    assert first.status != execution_pb2.EXECUTION_STATUS_COMPLETED, "too late"
                    watches.append(watch)
                    _, text = await pod.get(session, "/metrics")
                    if _sample_sum(text, "gateway_watch_pollers") == 2:  # one per worker
                        break
                else:
                    pytest.fail("every watch landed on one worker")
                ends = await asyncio.gather(*(_last_state(watch) for watch in watches))
            finally:
                for watch_channel in channels:
                    await watch_channel.close()
            elapsed = time.monotonic() - started
            assert all(end == execution_pb2.EXECUTION_STATUS_COMPLETED for end in ends)
            assert elapsed < 15, f"the watches ended after {elapsed:.1f}s: by polling"
            _, text = await pod.get(session, "/metrics")
            delivered = emulator.state.stats.webhook_deliveries
            assert delivered >= 1
            verdict = "gateway_webhook_deliveries_total"
            assert _sample_sum(text, verdict, result="accepted") == delivered  # verified once
            assert _sample_sum(text, verdict, result="rejected") == 0


async def _last_state(watch: Any) -> int:
    status = execution_pb2.EXECUTION_STATUS_UNSPECIFIED
    while isinstance(state := await watch.read(), execution_pb2.Execution):
        status = state.status
    return status
