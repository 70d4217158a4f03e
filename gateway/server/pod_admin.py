"""The admin port of a pod of workers (``GATEWAY_WORKERS`` > 1): one answer for all of them.

Each worker serves its own admin endpoints on a private unix socket
(:class:`~gateway.server.admin.PrivateSocket`); the pod's parent, which holds no gRPC
object, serves the configured ``GATEWAY_ADMIN_LISTEN`` by asking every worker:

* ``GET /healthz`` — 200 when every worker answers its own ``/healthz``;
* ``GET /readyz`` — 200 when every worker is ready; 503 when one is not, or does not
  answer, and from the moment the pod is told to stop;
* ``GET /metrics`` — the workers' series merged (:mod:`gateway.telemetry.merge`); 503
  when a worker does not answer, as a sum without it would read as counters reset;
* ``POST /webhooks/gagiteck`` — the delivery, as received, goes to one worker (the first
  that takes the connection), which verifies it once (signature, window, replay) and wakes
  its pollers; its answer names the execution, and every other worker is told to wake
  that execution's pollers (``POST /internal/wake``). The sender gets the worker's answer,
  with ``woken`` counted over the pod.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from gateway.config.parsers import HostPort
from gateway.server.admin import MAX_WEBHOOK_BYTES, WAKE_PATH, WEBHOOK_PATH
from gateway.telemetry.merge import merge_expositions
from gateway.telemetry.metrics import CONTENT_TYPE

log = logging.getLogger("gateway.admin")

PROBE_TIMEOUT: Final = 0.8
"""Seconds a worker has to answer ``/healthz`` or ``/readyz`` (under a probe's usual 1 s)."""
METRICS_TIMEOUT: Final = 5.0
WEBHOOK_TIMEOUT: Final = 10.0
WAKE_TIMEOUT: Final = 2.0

HOP_BY_HOP: Final = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade", "te"}
)


def bind_admin(listen: HostPort) -> list[socket.socket]:
    """Listening sockets for the pod's admin address (one per address ``listen.host``
    resolves to), bound before the workers are forked, so a port in use stops start-up."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, _, _, _, address in dict.fromkeys(infos):
            sockets.append(socket.create_server(address, family=family))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        # create_server adds the address to strerror; a name not found has a negative errno
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror
        raise OSError(
            f"cannot listen on the admin address {listen}: {reason} "
            "(set GATEWAY_ADMIN_LISTEN, or 'off')"
        ) from exc
    return sockets


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200


class WorkerClient:
    """The parent's client of one worker's private admin socket."""

    def __init__(self, index: int, path: str) -> None:
        self.index = index
        self.path = path
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.path), auto_decompress=False
            )
        return self._session

    async def send(
        self,
        method: str,
        path: str,
        timeout: float,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """The worker's answer; raises aiohttp.ClientError or TimeoutError."""
        async with self.session.request(
            method,
            f"http://worker{path}",
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            return Answer(response.status, await response.read())

    async def get(self, path: str, timeout: float) -> Answer | None:
        """The worker's answer, or None when it gave none in time."""
        try:
            return await self.send("GET", path, timeout)
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class PodAdminServer:
    """The pod's admin port, served by the parent from its workers' private sockets."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        worker_sockets: Sequence[str],
        webhooks: bool,
    ) -> None:
        self.sockets = list(sockets)
        self.workers = [WorkerClient(index, path) for index, path in enumerate(worker_sockets)]
        self.webhooks = webhooks
        self.draining = False
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.webhooks:
            app.router.add_post(WEBHOOK_PATH, self._webhook)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        self._runner = runner
        for sock in self.sockets:
            await web.SockSite(runner, sock).start()

    def drain(self) -> None:
        """The pod is stopping: not ready from now on."""
        self.draining = True

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for worker in self.workers:
            await worker.close()

    async def _ask_each(self, path: str, timeout: float) -> list[Answer | None]:
        return list(await asyncio.gather(*(w.get(path, timeout) for w in self.workers)))

    async def _healthz(self, request: web.Request) -> web.Response:
        answers = await self._ask_each("/healthz", PROBE_TIMEOUT)
        failing = _failing(answers)
        if failing:
            return web.json_response({"status": "unhealthy", "workers": failing}, status=503)
        return web.json_response({"status": "ok", "workers": len(answers)})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "not ready", "detail": "stopping"}, status=503)
        failing = _failing(await self._ask_each("/readyz", PROBE_TIMEOUT))
        if failing:
            return web.json_response({"status": "not ready", "workers": failing}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await self._ask_each("/metrics", METRICS_TIMEOUT)
        failing = _failing(answers)
        if failing:
            text = f"workers {', '.join(failing)} did not answer; no partial sums\n"
            return web.Response(status=503, text=text)
        texts = [answer.body.decode() for answer in answers if answer is not None]
        response = web.Response(body=await asyncio.to_thread(merge_expositions, texts))
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for worker in self.workers:
            try:
                answer = await worker.send("POST", WEBHOOK_PATH, WEBHOOK_TIMEOUT, body, headers)
            except aiohttp.ClientConnectorError:
                continue  # nothing was sent: the next worker verifies it
            except (aiohttp.ClientError, TimeoutError):
                break  # perhaps verified and recorded: the sender decides to deliver again
            if not answer.ok:
                return web.Response(
                    status=answer.status, body=answer.body, content_type="application/json"
                )
            return web.json_response(await self._wake_others(worker, orjson.loads(answer.body)))
        log.warning("webhook not verified: no worker answered")
        return web.json_response({"detail": "no worker answered; deliver again"}, status=503)

    async def _wake_others(self, verifier: WorkerClient, answer: dict[str, Any]) -> dict[str, Any]:
        resource = answer.pop("wake", None)
        if not isinstance(resource, str):
            return answer
        wake = orjson.dumps({"resource": resource})
        others = [worker for worker in self.workers if worker is not verifier]
        results = await asyncio.gather(
            *(w.send("POST", WAKE_PATH, WAKE_TIMEOUT, wake) for w in others),
            return_exceptions=True,
        )
        for worker, result in zip(others, results, strict=True):
            if isinstance(result, Answer) and result.ok:
                answer["woken"] = answer.get("woken", 0) + orjson.loads(result.body)["woken"]
            else:  # its pollers keep their safety interval
                log.warning("worker %d was not woken for a webhook: %r", worker.index, result)
        return answer


def _failing(answers: Sequence[Answer | None]) -> list[str]:
    """The indexes of the workers that did not answer 200."""
    return [str(i) for i, answer in enumerate(answers) if answer is None or not answer.ok]
