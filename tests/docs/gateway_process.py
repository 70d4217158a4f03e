"""A real gateway with its embedded emulator, as `make run` starts it, for the doc tests.

It runs as its own process (``python -m gateway serve``) on free loopback ports, with
none of the caller's ``GATEWAY_*`` variables, so that the examples meet what a reader
meets after ``make run``: open mode, the default settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.paths import REPO

ADDRESS_VARIABLE = "GAGITECK_GATEWAY_ADDRESS"
"""Where the examples look for the gateway (their default is make run's 127.0.0.1:50051)."""

DOCUMENTED_ADDRESS = "127.0.0.1:50051"

STRICT_VARIABLE = "GATEWAY_DOCTEST"
"""Set to 1 by `make doctest`: a missing tool (Go, Maven, build/bin) fails instead of skipping."""


def strict() -> bool:
    return os.environ.get(STRICT_VARIABLE) == "1"


def missing(what: str) -> None:
    """Skip for want of ``what`` in an ordinary run; fail under `make doctest`."""
    if strict():
        pytest.fail(f"{what} (required under {STRICT_VARIABLE}=1)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_serving(target: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while process.poll() is None and time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError(f"the gateway at {target} did not come up (exit {process.poll()})")


@contextmanager
def running_gateway() -> Iterator[str]:
    """A gateway serving on a free port until the block ends; yields its ``HOST:PORT``."""
    target = f"127.0.0.1:{free_port()}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(
        GATEWAY_LISTEN=target,
        GATEWAY_ADMIN_LISTEN="off",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_SHUTDOWN_DELAY="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_serving(target, process, 60)
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def example_env(target: str, **extra: str) -> dict[str, str]:
    """The environment an example runs in: the reader's, pointed at ``target``."""
    return {**os.environ, ADDRESS_VARIABLE: target, **extra}
