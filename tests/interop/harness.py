"""Runs the Go and Java interop clients against a real gateway and emulator.

    python tests/interop/harness.py [go] [java]

Starts ``gagiteck-gateway serve`` (embedded emulator) on a free loopback port, waits for
grpc.health.v1 to report SERVING, then runs each client's ``run.sh TARGET``. Each client
prints its own ``N passed, N failed`` line; the harness exits non-zero if any failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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


def wait_serving(target: str, deadline: float) -> None:
    with grpc.insecure_channel(target) as channel:
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


def main(argv: list[str]) -> int:
    clients = argv or list(CLIENTS)
    target = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "GATEWAY_LISTEN": target,
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "GATEWAY_LOG_LEVEL": "warning",
        "GATEWAY_SHUTDOWN_DELAY": "3",
    }
    env.pop("GATEWAY_UPSTREAM_URL", None)
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    failed: list[str] = []
    try:
        wait_serving(target, time.monotonic() + 30)
        for client in clients:
            print(f"== interop: {client} client against {target}", flush=True)
            code = subprocess.call(["bash", str(HERE / client / "run.sh"), target])
            if code != 0:
                failed.append(client)
        if PROBE.exists() and not probe_drain(gateway, target):
            failed.append("shutdown probe")
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
    print(f"interop: {len(clients) - len(failed)} clients passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
