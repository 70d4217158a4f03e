"""The admin HTTP port: liveness, readiness, metrics and (optionally) the webhook receiver.

* ``GET /healthz`` — 200 while the process runs;
* ``GET /readyz`` — 200 while the gateway serves, 503 before start and while draining;
* ``GET /metrics`` — the gateway's series in the Prometheus text format
  (:mod:`gateway.telemetry.metrics`);
* ``POST /webhooks/gagiteck`` — with ``GATEWAY_WEBHOOK_SECRET`` set, verified upstream
  webhooks; ``execution.*`` events wake the pollers watching that execution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from gateway.config.parsers import HostPort
from gateway.streaming.watch import WatchHub
from gateway.streaming.webhooks import RedisReplays, WebhookRejected, WebhookVerifier
from gateway.telemetry.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("gateway.admin")

WEBHOOK_PATH = "/webhooks/gagiteck"
MAX_WEBHOOK_BYTES = 1024 * 1024


class AdminServer:
    def __init__(
        self,
        listen: HostPort,
        ready: Callable[[], bool],
        watches: WatchHub,
        verifier: WebhookVerifier | None,
        metrics: Metrics | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.listen = listen
        self.reuse_port = reuse_port
        self.ready = ready
        self.watches = watches
        self.verifier = verifier
        self.metrics = metrics or Metrics()
        self.port = 0
        self.webhooks_accepted = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.verifier is not None:
            app.router.add_post(WEBHOOK_PATH, self._webhook)
        return app

    async def start(self) -> int:
        if self._runner is not None:
            return self.port
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        # Worker processes share the admin port too; each answers for itself.
        site = web.TCPSite(
            runner, self.listen.host, self.listen.port, reuse_port=self.reuse_port or None
        )
        await site.start()
        self._runner = runner
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
        woken = 0
        resource = event.data.get("id")
        if event.type.startswith("execution.") and isinstance(resource, str):
            woken = self.watches.wake_resource(resource)
        return web.json_response({"status": "accepted", "woken": woken})
