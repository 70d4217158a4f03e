"""The command line as an operator meets it: start, serve, SIGTERM, bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from tests.support.paths import REPO

ROOT = REPO


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gateway(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_embedded_emulator_then_sigterm() -> None:
    target = f"127.0.0.1:{_free_port()}"
    process = _gateway(
        {
            "GATEWAY_LISTEN": target,
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{_free_port()}",
            "GATEWAY_SHUTDOWN_DELAY": "0",
            "GATEWAY_UPSTREAM_URL": "",
        }
    )
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            agent = stub.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="cli")), timeout=10
            )
            assert agent.id.startswith("agent_")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"gagiteck-gateway is serving gRPC on {target}" in out
    assert "grpcurl -plaintext" in out
    assert "Traceback" not in err


def test_bad_settings_stop_start_up_with_a_message() -> None:
    started = time.monotonic()
    process = _gateway({"GATEWAY_LISTEN": "nowhere", "GATEWAY_AUTH_MODE": "service"})
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "GATEWAY_LISTEN='nowhere': expected HOST:PORT" in err
    assert "set GATEWAY_UPSTREAM_API_KEY" in err
    assert "Traceback" not in err
    assert time.monotonic() - started < 30


def test_port_in_use_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _gateway(
            {
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "GATEWAY_ADMIN_LISTEN": "off",
                "GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9",
            }
        )
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
