"""``GATEWAY_WORKERS=N``: N gateway processes sharing one port with SO_REUSEPORT.

The parent forks the workers before it creates any gRPC or asyncio object (gRPC's core
must not be forked once it runs), then only supervises: it forwards SIGTERM/SIGINT to
every worker, and when one dies on its own it stops the others and exits with an error,
so that whatever runs the gateway (systemd, Kubernetes) restarts it whole.

The kernel spreads *connections* over the workers, not calls: a client that keeps one
HTTP/2 connection talks to one worker. Clients that want the whole machine open several
connections (a small channel pool, or client-side round robin over several targets).
With ``GATEWAY_REDIS_URL`` the workers share the rate limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from gateway.config.gateway import GatewayConfig


def run_workers(config: GatewayConfig, serve_one: Callable[[GatewayConfig], None]) -> int:
    children: list[int] = []
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            os.environ["GATEWAY_WORKER_INDEX"] = str(index)
            code = 0
            try:
                serve_one(config)
            except BaseException as exc:
                print(f"gagiteck-gateway worker {index}: {exc}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not stopping:
            print(f"gagiteck-gateway: worker {pid} exited with {code}; stopping", file=sys.stderr)
            stopping = True
            for other in alive:
                _signal(other, signal.SIGTERM)
        worst = worst or (1 if code != 0 else 0)
    return worst


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
