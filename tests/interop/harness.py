"""Runs the Go and Java interop clients against a real gateway and emulator.

    python tests/interop/harness.py [go] [java]

Starts ``gagiteck-gateway serve`` (embedded emulator) on a free loopback port, waits for
grpc.health.v1 to report SERVING, then runs each client's ``run.sh TARGET``. Each client
prints its own ``N passed, N failed`` line; the harness exits non-zero if any failed.

Then the mTLS run: a second gateway, started alongside the first, listens with throwaway
trustme certificates (a server certificate for 127.0.0.1 and localhost, client
certificates from a client CA); each client runs a few checks (a unary call, a stream,
health, grpcurl and grpc-health-probe for Go) with ``GATEWAY_INTEROP_TLS_CA``,
``GATEWAY_INTEROP_TLS_CERT`` and ``GATEWAY_INTEROP_TLS_KEY`` set, and shows that a client
without a certificate is refused.

Header allowlists: the plaintext gateway runs with ``GATEWAY_FORWARD_METADATA=x-tenant-id``
and ``GATEWAY_RETURN_HEADERS=x-ratelimit-limit,x-ratelimit-remaining`` (headers the
emulator sends on every answer), and the clients get ``GATEWAY_INTEROP_PASSTHROUGH=1`` to
check them. The emulator's request log keeps no ``x-tenant-id``, so forwarding is shown
against an upstream of the harness's own (:class:`EchoUpstream`) behind a third gateway,
whose address the clients get as ``GATEWAY_INTEROP_ECHO_TARGET``; after the Go run the
harness reads what reached that upstream.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLIENTS = ("go", "java")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# While a gateway starts, its port refuses connections: reconnect every 0.2 s, not after
# gRPC's default backoff (1 s growing 1.6 times), which can notice a gateway seconds late.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 200),
)


def wait_serving(
    target: str, deadline: float, credentials: grpc.ChannelCredentials | None = None
) -> None:
    if credentials is None:
        channel = grpc.insecure_channel(target, FAST_RECONNECT)
    else:
        channel = grpc.secure_channel(target, credentials, FAST_RECONNECT)
    with channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway at {target} did not become SERVING")
            time.sleep(0.1)


PROBE = ROOT / "build" / "go" / "bin" / "grpc-health-probe"
NOT_SERVING_EXIT = 4  # grpc-health-probe's exit status for a NOT_SERVING answer


def probe_drain(gateway: subprocess.Popen[bytes], target: str) -> bool:
    """SIGTERM the gateway; during its shutdown delay the probe must say NOT_SERVING."""
    gateway.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    probe = subprocess.run(
        [str(PROBE), "-addr", target], capture_output=True, text=True, check=False
    )
    ok = probe.returncode == NOT_SERVING_EXIT and "NOT_SERVING" in probe.stdout + probe.stderr
    print(f"{'PASS' if ok else 'FAIL'} tools.health_probe_not_serving_while_draining")
    print(f"shutdown: {int(ok)} passed, {int(not ok)} failed", flush=True)
    return ok


@dataclass(frozen=True)
class Pki:
    """The mTLS run's certificates as PEM files: the gateway's CA, its certificate and
    key, the CA of its clients and a client's certificate and key."""

    gateway_ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path

    def gateway_env(self) -> dict[str, str]:
        return {
            "GATEWAY_TLS_CERT": str(self.server_cert),
            "GATEWAY_TLS_KEY": str(self.server_key),
            "GATEWAY_TLS_CLIENT_CA": str(self.client_ca),
        }

    def client_env(self) -> dict[str, str]:
        return {
            "GATEWAY_INTEROP_TLS_CA": str(self.gateway_ca),
            "GATEWAY_INTEROP_TLS_CERT": str(self.client_cert),
            "GATEWAY_INTEROP_TLS_KEY": str(self.client_key),
        }

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.gateway_ca.read_bytes(),
            private_key=self.client_key.read_bytes(),
            certificate_chain=self.client_cert.read_bytes(),
        )


def make_pki(directory: Path) -> Pki:
    """Throwaway CAs and certificates (trustme) written to ``directory``. The client's key
    is PKCS#8: grpc-java (Netty without BouncyCastle) reads no other form; Go, grpcurl and
    grpc-health-probe read it as well."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    sys.path.insert(0, str(ROOT))
    from tests.support.tls import replace_file, write_ca, write_leaf  # the suite's helpers

    ca, client_ca = trustme.CA(), trustme.CA()
    server = write_leaf(ca.issue_cert("127.0.0.1", "localhost"), directory, "server")
    client = write_leaf(
        client_ca.issue_cert("interop-client.example", common_name="interop-client"),
        directory,
        "client",
    )
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    replace_file(client.key, pkcs8)
    return Pki(
        gateway_ca=write_ca(ca, directory / "gateway-ca.crt"),
        server_cert=server.cert,
        server_key=server.key,
        client_ca=write_ca(client_ca, directory / "clients-ca.crt"),
        client_cert=client.cert,
        client_key=client.key,
    )


# The mTLS run's Go checks: TLS itself (health, refusal), a unary call and a stream.
GO_MTLS_CHECKS = r"^(tls\..*|auth\.signup_login|agent\.create|stream\.agent_run_to_end)$"


# The plaintext gateway's header allowlists: both returned headers are on every emulator answer.
PASSTHROUGH = {
    "GATEWAY_FORWARD_METADATA": "x-tenant-id",
    "GATEWAY_RETURN_HEADERS": "x-ratelimit-limit,x-ratelimit-remaining",
}
ECHO_RETURNED = "x-tenant-seen"


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's pool expects
    PAGE = b'{"data": [], "total": 0, "limit": 1, "offset": 0}'

    def do_GET(self) -> None:
        assert isinstance(self.server, EchoUpstream)
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.seen.append(headers)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.PAGE)))
        self.send_header(ECHO_RETURNED, headers.get("x-tenant-id", "(none)"))
        self.end_headers()
        self.wfile.write(self.PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EchoUpstream(ThreadingHTTPServer):
    """A stand-in REST upstream on a free loopback port: every GET answers an empty page
    with ``x-tenant-seen`` set to the ``x-tenant-id`` it received; ``seen`` keeps each
    request's headers (names in lower case)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.seen: list[dict[str, str]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def upstream_saw_tenants(echo: EchoUpstream) -> bool:
    """What the Go client and grpcurl sent through the echo gateway, seen from its upstream:
    their ``x-tenant-id`` arrived, metadata not on the allowlist did not."""
    tenants = [headers.get("x-tenant-id", "") for headers in echo.seen]
    results = {
        "upstream.tenant_id_from_go": any(t.startswith("go-interop-") for t in tenants),
        "upstream.tenant_id_from_grpcurl": any(t.startswith("grpcurl-interop-") for t in tenants),
        "upstream.unlisted_metadata_left_out": bool(echo.seen)
        and not any("x-interop-unlisted" in headers for headers in echo.seen),
    }
    for name, ok in results.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": saw {tenants}"))
    passed = sum(results.values())
    print(f"upstream: {passed} passed, {len(results) - passed} failed", flush=True)
    return passed == len(results)


def start_gateway(target: str, **settings: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_LISTEN": target,
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "GATEWAY_LOG_LEVEL": "warning",
        "GATEWAY_SHUTDOWN_DELAY": "3",
    }
    env.pop("GATEWAY_UPSTREAM_URL", None)
    env.update(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )


def stop_gateway(gateway: subprocess.Popen[bytes]) -> None:
    gateway.terminate()
    try:
        gateway.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.kill()


def run_mtls(clients: list[str], target: str, pki: Pki) -> list[str]:
    """Each client over mTLS against the gateway at ``target``: the runs that failed."""
    wait_serving(target, time.monotonic() + 30, pki.channel_credentials())
    env = {**os.environ, **pki.client_env()}
    failed = []
    for client in clients:
        print(f"== interop: {client} client over mTLS against {target}", flush=True)
        flags = ["-run", GO_MTLS_CHECKS] if client == "go" else []
        run_sh = str(HERE / client / "run.sh")
        if subprocess.call(["bash", run_sh, target, *flags], env=env) != 0:
            failed.append(f"{client} over mTLS")
    return failed


def main(argv: list[str]) -> int:
    clients = argv or list(CLIENTS)
    target = f"127.0.0.1:{free_port()}"
    mtls_target = f"127.0.0.1:{free_port()}"
    echo_target = f"127.0.0.1:{free_port()}"
    scratch = tempfile.TemporaryDirectory(prefix="interop-tls-")
    pki = make_pki(Path(scratch.name))
    echo = EchoUpstream()
    gateway = start_gateway(target, **PASSTHROUGH)
    # Started now so that they come up while the plaintext run goes on.
    mtls_gateway = start_gateway(mtls_target, GATEWAY_SHUTDOWN_DELAY="0", **pki.gateway_env())
    echo_gateway = start_gateway(
        echo_target,
        GATEWAY_SHUTDOWN_DELAY="0",
        GATEWAY_UPSTREAM_URL=echo.url,
        GATEWAY_FORWARD_METADATA="x-tenant-id",
        GATEWAY_RETURN_HEADERS=ECHO_RETURNED,
    )
    env = {
        **os.environ,
        "GATEWAY_INTEROP_PASSTHROUGH": "1",
        "GATEWAY_INTEROP_ECHO_TARGET": echo_target,
    }
    failed: list[str] = []
    try:
        wait_serving(target, time.monotonic() + 30)
        wait_serving(echo_target, time.monotonic() + 30)
        for client in clients:
            print(f"== interop: {client} client against {target}", flush=True)
            code = subprocess.call(["bash", str(HERE / client / "run.sh"), target], env=env)
            if code != 0:
                failed.append(client)
        if "go" in clients and not upstream_saw_tenants(echo):
            failed.append("tenant forwarding")
        if PROBE.exists() and not probe_drain(gateway, target):
            failed.append("shutdown probe")
        failed += run_mtls(clients, mtls_target, pki)
    finally:
        for running in (gateway, mtls_gateway, echo_gateway):
            stop_gateway(running)
        echo.close()
        scratch.cleanup()
    runs = 2 * len(clients)  # each client plaintext, then over mTLS
    print(f"interop: {runs} runs, failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
