"""``gagiteck-gateway health``, as the image's HEALTHCHECK runs it: a second process with the
environment of ``serve``, against a real gateway on a port that is not the default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme

from tests.support.paths import REPO
from tests.support.tls import write_ca, write_leaf


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(env: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    return {**inherited, "GATEWAY_UPSTREAM_URL": "", **env}


def _health(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "health", *flags],
        cwd=REPO,
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=REPO,
        env=_environment(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def plaintext_gateway() -> Iterator[dict[str, str]]:
    """A gateway on every interface at a free port, its admin port elsewhere; its env."""
    port = _free_port()
    env = {
        "GATEWAY_LISTEN": f"0.0.0.0:{port}",
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{_free_port()}",
        "GATEWAY_SHUTDOWN_DELAY": "0",
    }
    process = _serve(env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield env
    finally:
        _stop(process)


def test_health_follows_gateway_listen(plaintext_gateway: dict[str, str]) -> None:
    port = plaintext_gateway["GATEWAY_LISTEN"].rpartition(":")[2]
    result = _health(plaintext_gateway)
    assert result.returncode == 0, result.stderr
    assert f"SERVING (grpc.health.v1 at 127.0.0.1:{port})" in result.stdout


def test_health_takes_the_flags_of_serve(plaintext_gateway: dict[str, str]) -> None:
    listen = plaintext_gateway["GATEWAY_LISTEN"]
    result = _health({}, "--listen", listen.replace("0.0.0.0", "127.0.0.1"))
    assert result.returncode == 0, result.stderr


def test_health_fails_while_the_gateway_drains() -> None:
    port = _free_port()
    env = {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_ADMIN_LISTEN": "off",
        # Long enough for a slow machine to ask while NOT_SERVING is still being said; the
        # test kills the gateway once it has.
        "GATEWAY_SHUTDOWN_DELAY": "30",
        "GATEWAY_SHUTDOWN_GRACE": "1",
    }
    process = _serve(env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        assert _health(env).returncode == 0
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20  # within GATEWAY_SHUTDOWN_DELAY: still answering
        while (result := _health(env)).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert result.returncode == 1
        assert "NOT_SERVING" in result.stderr
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("mtls", [pytest.param(False, id="tls"), pytest.param(True, id="mtls")])
def test_health_of_a_tls_listener_reads_the_admin_port(tmp_path: Path, mtls: bool) -> None:
    ca, client_ca = trustme.CA(), trustme.CA()
    server = write_leaf(ca.issue_cert("127.0.0.1", "localhost"), tmp_path, "server")
    client = client_ca.issue_cert("client.example")
    port, admin = _free_port(), _free_port()
    env = {
        "GATEWAY_LISTEN": f"0.0.0.0:{port}",
        "GATEWAY_ADMIN_LISTEN": f"0.0.0.0:{admin}",
        "GATEWAY_TLS_CERT": str(server.cert),
        "GATEWAY_TLS_KEY": str(server.key),
        "GATEWAY_SHUTDOWN_DELAY": "0",
    }
    if mtls:
        env["GATEWAY_TLS_CLIENT_CA"] = str(write_ca(client_ca, tmp_path / "clients-ca.crt"))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=client.private_key_pem.bytes() if mtls else None,
        certificate_chain=client.cert_chain_pems[0].bytes() if mtls else None,
    )
    process = _serve(env)
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        result = _health(env)
    finally:
        _stop(process)
    assert result.returncode == 0, result.stderr
    assert f"SERVING (http://127.0.0.1:{admin}/readyz)" in result.stdout


def test_health_against_nothing_fails_at_once() -> None:
    started = time.monotonic()
    result = _health({"GATEWAY_LISTEN": f"127.0.0.1:{_free_port()}"}, "--timeout", "5")
    assert result.returncode == 1
    assert "not serving" in result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert time.monotonic() - started < 5 + 5  # refused at once, not after the timeout


def test_health_against_no_admin_port_fails(tmp_path: Path) -> None:
    env = {"GATEWAY_LISTEN": "127.0.0.1:50051", "GATEWAY_ADMIN_LISTEN": f"[::1]:{_free_port()}"}
    server = write_leaf(trustme.CA().issue_cert("localhost"), tmp_path, "server")
    env |= {"GATEWAY_TLS_CERT": str(server.cert), "GATEWAY_TLS_KEY": str(server.key)}
    result = _health(env)
    assert result.returncode == 1
    assert f"not serving: http://{env['GATEWAY_ADMIN_LISTEN']}/readyz" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"GATEWAY_TLS_CERT": "CERT", "GATEWAY_ADMIN_LISTEN": "off"},
            "GATEWAY_ADMIN_LISTEN is off",
            id="tls-without-admin-port",
        ),
        pytest.param({"GATEWAY_LISTEN": "127.0.0.1:0"}, "port 0", id="port-zero"),
        pytest.param({"GATEWAY_LISTEN": "nowhere"}, "expected HOST:PORT", id="bad-setting"),
    ],
)
def test_health_that_cannot_ask_exits_1_not_2(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    if env.get("GATEWAY_TLS_CERT") == "CERT":
        server = write_leaf(trustme.CA().issue_cert("localhost"), tmp_path, "server")
        env = {**env, "GATEWAY_TLS_CERT": str(server.cert), "GATEWAY_TLS_KEY": str(server.key)}
    result = _health(env)
    assert result.returncode == 1  # Docker reserves 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
