"""GATEWAY_WORKERS: several processes on one port, all serving, all stopping together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from gateway.emulator import EmulatorConfig, running_emulator
from tests.support.paths import REPO
from tests.support.redis_server import free_port

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
