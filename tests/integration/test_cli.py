"""The command line as an operator meets it: start, serve, SIGTERM, bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import trustme
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from tests.support.paths import REPO
from tests.support.tls import write_ca, write_leaf

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


@pytest.mark.parametrize(
    ("mtls", "flags"),
    [
        pytest.param(False, "-cacert CA.crt", id="tls"),
        pytest.param(True, "-cacert CA.crt -cert CLIENT.crt -key CLIENT.key", id="mtls"),
    ],
)
def test_serve_over_tls_prints_grpcurl_tls_flags(tmp_path: Path, mtls: bool, flags: str) -> None:
    ca, client_ca = trustme.CA(), trustme.CA()
    server = write_leaf(ca.issue_cert("127.0.0.1", "localhost"), tmp_path, "server")
    client = client_ca.issue_cert("client.example")
    target = f"127.0.0.1:{_free_port()}"
    env = {
        "GATEWAY_LISTEN": target,
        "GATEWAY_ADMIN_LISTEN": "off",
        "GATEWAY_SHUTDOWN_DELAY": "0",
        "GATEWAY_UPSTREAM_URL": "",
        "GATEWAY_TLS_CERT": str(server.cert),
        "GATEWAY_TLS_KEY": str(server.key),
    }
    if mtls:
        env["GATEWAY_TLS_CLIENT_CA"] = str(write_ca(client_ca, tmp_path / "clients-ca.crt"))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=client.private_key_pem.bytes() if mtls else None,
        certificate_chain=client.cert_chain_pems[0].bytes() if mtls else None,
    )
    process = _gateway(env)
    try:
        with grpc.secure_channel(target, credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"serving gRPC on {target} over {'mTLS' if mtls else 'TLS'}" in out
    assert f"grpcurl {flags} {target} list" in out
    assert f"CA.crt: the CA that signed {server.cert}" in out
    assert ("CLIENT.crt, CLIENT.key: a client certificate" in out) is mtls
    assert "-plaintext" not in out
    assert "demo --target" not in out  # the demo client speaks plaintext only


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
