"""The admin HTTP port: liveness, readiness, metrics and (optionally) the webhook receiver.

* ``GET /healthz`` — 200 while the process runs;
* ``GET /readyz`` — 200 while the gateway serves, 503 before start and while draining;
* ``GET /metrics`` — the gateway's series in the Prometheus text format
  (:mod:`gateway.telemetry.metrics`);
* ``POST /webhooks/gagiteck`` — with ``GATEWAY_WEBHOOK_SECRET`` set, verified upstream
  webhooks; ``execution.*`` events wake the pollers watching that execution.

A worker of a pod (``GATEWAY_WORKERS`` > 1) serves the same endpoints on a
:class:`PrivateSocket` for the pod's parent (:mod:`gateway.server.pod_admin`), which
alone serves the configured address. There a verified webhook's answer also names the
execution (``wake``) so that the parent can wake the other workers' pollers, and
``POST /internal/wake`` (``{"resource": "exec_…"}``) wakes this worker's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from gateway.config.parsers import HostPort
from gateway.streaming.watch import WatchHub
from gateway.streaming.webhooks import RedisReplays, WebhookRejected, WebhookVerifier
from gateway.telemetry.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("gateway.admin")

WEBHOOK_PATH: Final = "/webhooks/gagiteck"
WAKE_PATH: Final = "/internal/wake"
MAX_WEBHOOK_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PrivateSocket(HostPort):
    """A pod worker's admin address: a unix socket in a directory only the gateway's user
    may enter (``host`` and ``port`` are unused). Its server serves :data:`WAKE_PATH` too."""

    path: str

    @classmethod
    def at(cls, path: str) -> PrivateSocket:
        return cls("unix", 0, path)

    def __str__(self) -> str:
        return f"unix:{self.path}"


class AdminServer:
    def __init__(
        self,
        listen: HostPort,
        ready: Callable[[], bool],
        watches: WatchHub,
        verifier: WebhookVerifier | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.listen = listen
        self.ready = ready
        self.watches = watches
        self.verifier = verifier
        self.metrics = metrics or Metrics()
        self.port = 0
        self.webhooks_accepted = 0
        self._runner: web.AppRunner | None = None

    @property
    def private(self) -> bool:
        """Serving a pod's parent, on a private socket."""
        return isinstance(self.listen, PrivateSocket)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.verifier is not None:
            app.router.add_post(WEBHOOK_PATH, self._webhook)
            if self.private:
                app.router.add_post(WAKE_PATH, self._wake)
        return app

    async def start(self) -> int:
        if self._runner is not None:
            return self.port
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site: web.BaseSite
        if isinstance(self.listen, PrivateSocket):
            site = web.UnixSite(runner, self.listen.path)
        else:
            site = web.TCPSite(runner, self.listen.host, self.listen.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if not self.private:
            self.port = int(runner.addresses[0][1])
        return self.port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        replays = self.verifier.replays if self.verifier is not None else None
        if isinstance(replays, RedisReplays):
            await replays.aclose()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _webhook(self, request: web.Request) -> web.Response:
        assert self.verifier is not None
        body = await request.read()
        try:
            event = await self.verifier.verify(body, request.headers)
        except WebhookRejected as exc:
            self.metrics.webhooks_rejected.inc()
            log.warning("webhook rejected: %s", exc.reason)
            return web.json_response({"detail": exc.reason}, status=exc.status)
        self.metrics.webhooks_accepted.inc()
        self.webhooks_accepted += 1
        answer: dict[str, Any] = {"status": "accepted", "woken": 0}
        resource = event.data.get("id")
        if event.type.startswith("execution.") and isinstance(resource, str):
            answer["woken"] = self.watches.wake_resource(resource)
            if self.private:
                answer["wake"] = resource
        return web.json_response(answer)

    async def _wake(self, request: web.Request) -> web.Response:
        """A delivery another worker of the pod verified: wake this worker's pollers."""
        try:
            resource = orjson.loads(await request.read()).get("resource")
        except (orjson.JSONDecodeError, AttributeError):
            resource = None
        if not isinstance(resource, str) or not resource:
            return web.json_response({"detail": 'expected {"resource": id}'}, status=400)
        return web.json_response({"woken": self.watches.wake_resource(resource)})
