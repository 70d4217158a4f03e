"""``GATEWAY_WORKERS=N``: N gateway processes sharing one port with SO_REUSEPORT.

The parent forks the workers before it creates any gRPC or asyncio object (gRPC's core
must not be forked once it runs), then supervises them on an asyncio loop of its own that
never holds a gRPC object: it forwards SIGTERM/SIGINT to every worker, and when one dies
on its own it stops the others and exits with an error, so that whatever runs the gateway
(systemd, Kubernetes) restarts it whole.

The admin port answers for the whole pod. Before forking, the parent binds
``GATEWAY_ADMIN_LISTEN`` and makes a private directory (mode 0700); each worker serves its
own admin endpoints on a unix socket there, and the parent serves the port from them
(:mod:`gateway.server.pod_admin`): health and readiness of every worker, their metrics
merged, a webhook verified once and every worker's pollers woken.

The kernel spreads *connections* over the workers, not calls: a client that keeps one
HTTP/2 connection talks to one worker. Clients that want the whole machine open several
connections (a small channel pool, or client-side round robin over several targets).
With ``GATEWAY_REDIS_URL`` the workers share the rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from gateway.config.gateway import GatewayConfig
from gateway.server.admin import PrivateSocket
from gateway.server.pod_admin import PodAdminServer, bind_admin


def run_workers(config: GatewayConfig, serve_one: Callable[[GatewayConfig], None]) -> int:
    pod = PodAdmin.prepare(config)
    children: list[int] = []
    try:
        for index in range(config.workers):
            worker = pod.worker_config(config, index)
            pid = os.fork()
            if pid == 0:
                _serve_worker(index, worker, serve_one, pod)
            children.append(pid)
        return asyncio.run(Supervisor(children, pod.server(config.workers)).run())
    except BaseException:
        for pid in children:
            _signal(pid, signal.SIGTERM)
        raise
    finally:
        pod.close()


def _serve_worker(
    index: int,
    config: GatewayConfig,
    serve_one: Callable[[GatewayConfig], None],
    pod: PodAdmin,
) -> NoReturn:
    pod.leave()
    os.environ["GATEWAY_WORKER_INDEX"] = str(index)
    code = 0
    try:
        serve_one(config)
    except BaseException as exc:
        print(f"gagiteck-gateway worker {index}: {exc}", file=sys.stderr)
        code = 1
    finally:
        logging.shutdown()  # the log lines still waiting in the batch are written
        os._exit(code)


@dataclasses.dataclass
class PodAdmin:
    """What the parent sets up for the pod's admin port before forking: the port's
    sockets and the private directory of the workers' sockets (none when the port is off)."""

    sockets: list[socket.socket]
    directory: Path | None
    webhooks: bool

    @classmethod
    def prepare(cls, config: GatewayConfig) -> PodAdmin:
        if config.admin_listen is None:
            return cls([], None, False)
        sockets = bind_admin(config.admin_listen)
        directory = Path(tempfile.mkdtemp(prefix="gagiteck-gateway-"))  # 0700
        return cls(sockets, directory, bool(config.webhook_secret))

    def socket_path(self, index: int) -> str:
        assert self.directory is not None
        return str(self.directory / f"worker-{index}.sock")

    def worker_config(self, config: GatewayConfig, index: int) -> GatewayConfig:
        """A worker's config: its admin endpoints on its private socket."""
        if self.directory is None:
            return config
        return dataclasses.replace(config, admin_listen=PrivateSocket.at(self.socket_path(index)))

    def server(self, workers: int) -> PodAdminServer | None:
        if self.directory is None:
            return None
        paths = [self.socket_path(index) for index in range(workers)]
        return PodAdminServer(self.sockets, paths, self.webhooks)

    def leave(self) -> None:
        """In a worker: let go of the parent's listening sockets."""
        for sock in self.sockets:
            sock.close()

    def close(self) -> None:
        self.leave()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


class Supervisor:
    """The parent's loop: signals forwarded, workers reaped, the pod's admin port served."""

    def __init__(self, children: list[int], admin: PodAdminServer | None) -> None:
        self.alive = set(children)
        self.admin = admin
        self.stopping = False
        self.worst = 0
        self._done = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.forward, signum)
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # workers that ended before the handler was set
        try:
            if self.admin is not None:
                await self.admin.start()
            await self._done.wait()
        finally:
            if self.admin is not None:
                await self.admin.close()
        return self.worst

    def forward(self, signum: int) -> None:
        self.stopping = True
        if self.admin is not None:
            self.admin.drain()
        for pid in self.alive:
            _signal(pid, signum)

    def reap(self) -> None:
        for pid in list(self.alive):
            try:
                ended, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                ended, status = pid, 0
            if ended == 0:
                continue
            self.alive.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 and not self.stopping:
                print(
                    f"gagiteck-gateway: worker {pid} exited with {code}; stopping", file=sys.stderr
                )
                self.forward(signal.SIGTERM)
            self.worst = self.worst or (1 if code != 0 else 0)
        if not self.alive:
            self._done.set()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
