"""TLS and mTLS on the gRPC port, certificate rotation, the caller's certificate identity,
the service modes' refusal to listen unauthenticated, and a private CA for the upstream.

Every certificate is made by trustme for the test; every client is a real one (grpcio,
a raw TLS handshake, grpcurl) on a real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import trustme
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from gateway.config.gateway import load_config
from gateway.config.parsers import ConfigError
from gateway.emulator import EmulatorConfig, RunningEmulator, create_app, running_emulator
from gateway.server.tls import CertificateFiles, client_identity
from gateway.testing import FakeClock
from tests.support.harness import serving_gateway
from tests.support.paths import REPO
from tests.support.tls import (
    KeyPair,
    presented_certificate,
    replace_file,
    secure_channel,
    serving_https_app,
    write_ca,
    write_leaf,
)

SERVER_NAMES = ("localhost", "127.0.0.1")


@dataclass
class Pki:
    """The gateway's CA and certificate, the CA of its clients and two clients: one it
    signed and one signed by a stranger CA."""

    directory: Path
    ca: trustme.CA
    server: KeyPair
    client_ca: trustme.CA
    client_ca_file: Path
    client: trustme.LeafCert
    other_client: trustme.LeafCert
    stranger: trustme.LeafCert

    def tls(self, **more: Any) -> dict[str, Any]:
        """Gateway settings: TLS on the port."""
        return {"tls_cert": str(self.server.cert), "tls_key": str(self.server.key), **more}

    def mtls(self, **more: Any) -> dict[str, Any]:
        """Gateway settings: TLS, and client certificates required."""
        return self.tls(tls_client_ca=str(self.client_ca_file), **more)

    def rotate(self) -> KeyPair:
        """A new certificate with a new key from the same CA, over the served files."""
        self.server = write_leaf(self.ca.issue_cert(*SERVER_NAMES), self.directory, "server")
        return self.server


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, client_ca = trustme.CA(), trustme.CA()
    return Pki(
        directory=tmp_path,
        ca=ca,
        server=write_leaf(ca.issue_cert(*SERVER_NAMES), tmp_path, "server"),
        client_ca=client_ca,
        client_ca_file=write_ca(client_ca, tmp_path / "clients-ca.crt"),
        client=client_ca.issue_cert("client-a.example", common_name="client-a"),
        other_client=client_ca.issue_cert("client-b.example", common_name="client-b"),
        stranger=trustme.CA().issue_cert("client-a.example", common_name="client-a"),
    )


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(open_mode=True)) as running:
        yield running


async def _list_agents(channel: grpc.aio.Channel) -> agent_pb2.ListAgentsResponse:
    agents = agent_pb2_grpc.AgentServiceStub(channel)
    return await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)


async def _refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_agents(channel)
    return caught.value.code()


# --------------------------------------------------------------------------- TLS and mTLS


@pytest.mark.asyncio
async def test_a_client_over_tls_calls_an_rpc(pki: Pki, emulator: RunningEmulator) -> None:
    async with serving_gateway(emulator.url, **pki.tls()) as running:
        async with secure_channel(running.target, pki.ca) as channel:
            agents = agent_pb2_grpc.AgentServiceStub(channel)
            created = await agents.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Over TLS")), timeout=5
            )
            fetched = await agents.GetAgent(
                agent_pb2.GetAgentRequest(agent_id=created.id), timeout=5
            )
        assert fetched.name == "Over TLS"
        assert await presented_certificate(running.target, pki.ca) == pki.server.der


@pytest.mark.asyncio
async def test_a_plaintext_client_is_refused(pki: Pki, emulator: RunningEmulator) -> None:
    async with serving_gateway(emulator.url, **pki.tls()) as running:
        assert await _refused(running.channel) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_mtls_requires_a_client_certificate_of_the_client_ca(
    pki: Pki, emulator: RunningEmulator
) -> None:
    async with serving_gateway(emulator.url, **pki.mtls()) as running:
        async with secure_channel(running.target, pki.ca, pki.client) as channel:
            await _list_agents(channel)
        async with secure_channel(running.target, pki.ca) as channel:
            assert await _refused(channel) is grpc.StatusCode.UNAVAILABLE
        async with secure_channel(running.target, pki.ca, pki.stranger) as channel:
            assert await _refused(channel) is grpc.StatusCode.UNAVAILABLE
        assert await _refused(running.channel) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_the_client_certificate_can_key_the_callers_bucket(
    pki: Pki, emulator: RunningEmulator
) -> None:
    """GATEWAY_CALLER_IDENTITY=client-certificate: one certificate is one caller whatever
    credential it sends; another certificate is another caller."""
    settings = pki.mtls(
        caller_identity="client-certificate", caller_rate_limit_rps=0.2, caller_rate_limit_burst=1
    )
    async with serving_gateway(emulator.url, **settings) as running:
        async with secure_channel(running.target, pki.ca, pki.client) as channel:
            await _list_agents(channel)
            agents = agent_pb2_grpc.AgentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await agents.ListAgents(
                    agent_pb2.ListAgentsRequest(),
                    metadata=(("authorization", "Bearer another-credential"),),
                    timeout=5,
                )
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        async with secure_channel(running.target, pki.ca, pki.other_client) as channel:
            await _list_agents(channel)


# --------------------------------------------------------------------------- identity


@contextlib.asynccontextmanager
async def _identity_server(files: CertificateFiles) -> AsyncIterator[str]:
    """A server whose one method answers :func:`client_identity` of its caller."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return (client_identity(context) or "none").encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Identity", {"Who": grpc.unary_unary_rpc_method_handler(who)}
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", files.credentials())
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _identity(target: str, ca: trustme.CA, client: trustme.LeafCert | None) -> str:
    async with secure_channel(target, ca, client) as channel:
        who: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/test.Identity/Who"
        )
        answer = await who(b"", timeout=5)
    return answer.decode()


@pytest.mark.asyncio
async def test_client_identity_names_the_client_certificate(pki: Pki) -> None:
    mtls = CertificateFiles(str(pki.server.cert), str(pki.server.key), str(pki.client_ca_file))
    async with _identity_server(mtls) as target:
        first = await _identity(target, pki.ca, pki.client)
        again = await _identity(target, pki.ca, pki.client)  # a new connection
        other = await _identity(target, pki.ca, pki.other_client)
    assert first == again
    assert re.fullmatch(r"x509:[0-9a-f]{64}", first)
    assert other != first
    assert other.startswith("x509:")

    tls_only = CertificateFiles(str(pki.server.cert), str(pki.server.key))
    async with _identity_server(tls_only) as target:
        assert await _identity(target, pki.ca, None) == "none"


# --------------------------------------------------------------------------- rotation


async def _eventually_presented(target: str, ca: trustme.CA, expected: bytes) -> bytes:
    """The certificate presented on new connections, once it is ``expected`` (or at 5 s)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        seen = await presented_certificate(target, ca)
        if seen == expected or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_rotated_certificate_reaches_new_connections_without_a_restart(
    pki: Pki, emulator: RunningEmulator
) -> None:
    old = pki.server
    async with serving_gateway(emulator.url, **pki.tls(tls_reload_interval=0.05)) as running:
        async with secure_channel(running.target, pki.ca) as before:
            await _list_agents(before)
            assert await presented_certificate(running.target, pki.ca) == old.der

            new = pki.rotate()
            assert new.der != old.der
            assert await _eventually_presented(running.target, pki.ca, new.der) == new.der
            async with secure_channel(running.target, pki.ca) as after:
                await _list_agents(after)
            await _list_agents(before)  # the connection opened before keeps working
        assert running.gateway.port == int(running.target.rpartition(":")[2])


@pytest.mark.asyncio
async def test_broken_files_keep_the_old_certificate_and_are_logged_once(
    pki: Pki, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.server.tls")
    old = pki.server
    async with serving_gateway(emulator.url, **pki.tls(tls_reload_interval=0.05)) as running:
        # half a rotation: a new certificate whose key has not arrived
        replace_file(old.cert, pki.ca.issue_cert(*SERVER_NAMES).cert_chain_pems[0].bytes())
        for _ in range(4):
            await asyncio.sleep(0.06)
            assert await presented_certificate(running.target, pki.ca) == old.der
            async with secure_channel(running.target, pki.ca) as channel:
                await _list_agents(channel)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "certificate served is unchanged" in warnings[0].getMessage()
        assert str(old.cert) in warnings[0].getMessage()

        new = pki.rotate()  # the rotation completes
        assert await _eventually_presented(running.target, pki.ca, new.der) == new.der
    assert any(r.getMessage() == "TLS certificate reloaded" for r in caplog.records)


def test_files_are_looked_at_once_per_interval_and_reloaded_only_when_changed(
    pki: Pki,
) -> None:
    clock = FakeClock()
    files = CertificateFiles(str(pki.server.cert), str(pki.server.key), interval=5, clock=clock)
    assert files.fetch() is None  # nothing changed
    pki.rotate()
    assert files.fetch() is None  # changed, but the interval has not passed
    clock.now += 5
    assert isinstance(files.fetch(), grpc.ServerCertificateConfiguration)
    clock.now += 5
    assert files.fetch() is None  # served already

    stat = pki.server.cert.stat()  # touched, the same bytes: nothing to reload
    os.utime(pki.server.cert, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    clock.now += 5
    assert files.fetch() is None


def test_files_that_cannot_serve_stop_the_start(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        CertificateFiles(str(pki.directory / "missing.crt"), str(pki.server.key))
    with pytest.raises(ConfigError, match="not a certificate chain and its private key"):
        CertificateFiles(str(pki.server.cert), str(pki.client_ca_file))


# --------------------------------------------------------------------------- configuration


def _env(**values: str) -> dict[str, str]:
    return {f"GATEWAY_{name.upper()}": value for name, value in values.items()}


def test_tls_settings_are_read(pki: Pki) -> None:
    config = load_config(
        _env(
            tls_cert=str(pki.server.cert),
            tls_key=str(pki.server.key),
            tls_client_ca=str(pki.client_ca_file),
            tls_reload_interval="2",
            upstream_url="https://api.example.com",
            upstream_ca=str(pki.client_ca_file),
        )
    )
    assert config.tls_cert == str(pki.server.cert)
    assert config.tls_client_ca == str(pki.client_ca_file)
    assert config.tls_reload_interval == 2.0
    assert config.upstream_settings("https://api.example.com").ca_file == str(pki.client_ca_file)
    assert load_config({}).upstream_settings("https://api.example.com").ca_file is None


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"tls_cert": "{dir}/missing.crt", "tls_key": "{key}"}, "GATEWAY_TLS_CERT='"),
        ({"tls_cert": "{dir}/missing.crt", "tls_key": "{key}"}, "cannot read"),
        ({"tls_cert": "{cert}", "tls_key": "{dir}/plain.txt"}, "holds no PEM block"),
        ({"tls_cert": "{cert}"}, "GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together"),
        ({"tls_cert": "{cert}", "tls_key": "{client_ca}"}, "not a certificate chain and its"),
        ({"tls_client_ca": "{client_ca}"}, "GATEWAY_TLS_CLIENT_CA needs TLS on the listener"),
        (
            {"tls_cert": "{cert}", "tls_key": "{key}", "tls_client_ca": "{key}"},
            "GATEWAY_TLS_CLIENT_CA: ",
        ),
        ({"upstream_ca": "{client_ca}"}, "applies only to an https://"),
        (
            {"upstream_url": "http://api.example.com", "upstream_ca": "{client_ca}"},
            "applies only to an https://",
        ),
        ({"tls_reload_interval": "-1"}, "GATEWAY_TLS_RELOAD_INTERVAL"),
    ],
)
def test_tls_files_that_cannot_serve_stop_start_up(
    pki: Pki, settings: dict[str, str], says: str
) -> None:
    (pki.directory / "plain.txt").write_text("not a certificate\n")
    paths = {
        "dir": str(pki.directory),
        "cert": str(pki.server.cert),
        "key": str(pki.server.key),
        "client_ca": str(pki.client_ca_file),
    }
    with pytest.raises(ConfigError) as caught:
        load_config(_env(**{name: value.format(**paths) for name, value in settings.items()}))
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("mode", "listen", "transport", "starts"),
    [
        pytest.param("service", "0.0.0.0:50051", "plaintext", False, id="service-any"),
        pytest.param("passthrough-or-service", "[::]:50051", "plaintext", False, id="either-any"),
        pytest.param("service", "10.1.2.3:50051", "plaintext", False, id="service-lan"),
        pytest.param("service", "0.0.0.0:50051", "tls", False, id="service-tls-only"),
        pytest.param("service", "0.0.0.0:50051", "mtls", True, id="service-mtls"),
        pytest.param("passthrough-or-service", "[::]:50051", "mtls", True, id="either-mtls"),
        pytest.param("service", "0.0.0.0:50051", "opt-out", True, id="service-opt-out"),
        pytest.param("service", "127.0.0.1:50051", "plaintext", True, id="loopback-v4"),
        pytest.param("service", "127.0.0.2:50051", "plaintext", True, id="loopback-net"),
        pytest.param("service", "[::1]:50051", "plaintext", True, id="loopback-v6"),
        pytest.param("service", "localhost:50051", "plaintext", True, id="localhost"),
        pytest.param("passthrough", "0.0.0.0:50051", "plaintext", True, id="passthrough-any"),
    ],
)
def test_service_modes_refuse_to_listen_unauthenticated(
    pki: Pki, mode: str, listen: str, transport: str, starts: bool
) -> None:
    env = _env(auth_mode=mode, listen=listen, upstream_api_key="ggt_gateway")
    if transport in ("tls", "mtls"):
        env.update(_env(tls_cert=str(pki.server.cert), tls_key=str(pki.server.key)))
    if transport == "mtls":
        env.update(_env(tls_client_ca=str(pki.client_ca_file)))
    if transport == "opt-out":
        env.update(_env(allow_insecure_service_mode="true"))
    if starts:
        assert load_config(env).auth_mode == mode
        return
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    message = str(caught.value)
    assert f"GATEWAY_AUTH_MODE={mode} on " in message
    assert "spend the gateway's key" in message
    assert "GATEWAY_TLS_CLIENT_CA" in message
    assert "GATEWAY_ALLOW_INSECURE_SERVICE_MODE=true" in message


# --------------------------------------------------------------------------- upstream CA


@contextlib.asynccontextmanager
async def _https_emulator(pki: Pki) -> AsyncIterator[str]:
    """The emulator over HTTPS, with a certificate of the test's own CA."""
    app = create_app(EmulatorConfig(open_mode=True, stream_delay_seconds=0.0))
    async with serving_https_app(app, pki.ca.issue_cert(*SERVER_NAMES)) as url:
        yield url


@pytest.mark.asyncio
async def test_an_https_upstream_with_a_private_ca(pki: Pki) -> None:
    ca_file = write_ca(pki.ca, pki.directory / "upstream-ca.crt")
    async with _https_emulator(pki) as url:
        async with serving_gateway(url, upstream_ca=str(ca_file)) as running:
            agents = agent_pb2_grpc.AgentServiceStub(running.channel)
            agent = await agents.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Private CA")), timeout=5
            )
            run = agents.StreamAgentRun(  # the stream client's own connector
                agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="hi"), timeout=10
            )
            kinds = [event.WhichOneof("event") async for event in run]
        assert agent.name == "Private CA"
        assert kinds[0] == "run_started"
        assert len(kinds) > 1


@pytest.mark.asyncio
async def test_an_https_upstream_of_an_unknown_ca_is_unavailable(pki: Pki) -> None:
    async with (
        _https_emulator(pki) as url,
        serving_gateway(url, retry_max_attempts=1) as running,
    ):
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await agents.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="x")), timeout=5
            )
        run = agents.StreamAgentRun(
            agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for _ in run:
                pass
    assert unary.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "certificate" in (unary.value.details() or "").lower()
    assert stream.value.code() is grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------- grpcurl

GO_BIN = REPO / "build" / "go" / "bin"
TOOLS_SH = REPO / "tests" / "interop" / "go" / "tools.sh"


@pytest.fixture(scope="session")
def grpcurl() -> Path:
    """build/go/bin/grpcurl, installed at the interop harness's pinned version if absent."""
    binary = GO_BIN / "grpcurl"
    if not os.access(binary, os.X_OK):
        pinned = re.search(r"^GRPCURL_VERSION=(\S+)", TOOLS_SH.read_text(), re.MULTILINE)
        go = shutil.which("go")
        if go is None or pinned is None:
            pytest.skip(f"{binary} is absent and go is not on PATH to install it")
        package = f"github.com/fullstorydev/grpcurl/cmd/grpcurl@{pinned.group(1)}"
        env = {**os.environ, "GOBIN": str(GO_BIN), "GOFLAGS": "", "GOTOOLCHAIN": "local"}
        done = subprocess.run(
            [go, "install", package], env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0 or not os.access(binary, os.X_OK):
            pytest.skip(f"go install {package} failed: {done.stderr.strip()[-500:]}")
    return binary


async def _run(*command: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.asyncio
async def test_grpcurl_lists_services_over_mtls(
    pki: Pki, emulator: RunningEmulator, grpcurl: Path
) -> None:
    ca_file = write_ca(pki.ca, pki.directory / "gateway-ca.crt")
    client = write_leaf(pki.client, pki.directory, "client")
    stranger = write_leaf(pki.stranger, pki.directory, "stranger")
    common = (str(grpcurl), "-connect-timeout", "5", "-max-time", "10", "-cacert", str(ca_file))
    async with serving_gateway(emulator.url, **pki.mtls()) as running:
        code, output = await _run(
            *common, "-cert", str(client.cert), "-key", str(client.key), running.target, "list"
        )
        assert code == 0, output
        assert "gagiteck.v1.AgentService" in output.splitlines()

        code, output = await _run(*common, running.target, "list")
        assert code != 0, output
        code, output = await _run(
            *common, "-cert", str(stranger.cert), "-key", str(stranger.key), running.target, "list"
        )
        assert code != 0, output
