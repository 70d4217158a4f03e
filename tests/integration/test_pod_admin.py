"""The pod's admin port (GATEWAY_WORKERS > 1), in-process: two gateways serving their admin
endpoints on private unix sockets, and the parent's server answering for both."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli.workers import PodAdmin
from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import HostPort
from gateway.server.admin import PrivateSocket
from gateway.server.gateway import State
from gateway.server.pod_admin import PodAdminServer, bind_admin
from tests.support.harness import RunningGateway, serving_gateway
from tests.support.webhooks import signed_delivery

SECRET = "whsec_pod"
UNUSED_UPSTREAM = "http://127.0.0.1:9"


def _delivery(event_id: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    return signed_delivery(secret, event_id)


def _accepted(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_webhook_deliveries_total" and s.labels == {"result": "accepted"}
    )


@contextlib.asynccontextmanager
async def _worker(path: Path) -> AsyncIterator[RunningGateway]:
    async with serving_gateway(
        UNUSED_UPSTREAM, admin_listen=PrivateSocket.at(str(path)), webhook_secret=SECRET
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def _pod(tmp_path: Path) -> AsyncIterator[tuple[str, PodAdminServer, list[RunningGateway]]]:
    paths = [tmp_path / "worker-0.sock", tmp_path / "worker-1.sock"]
    sockets = bind_admin(HostPort("127.0.0.1", 0))
    port = sockets[0].getsockname()[1]
    server = PodAdminServer(sockets, [str(path) for path in paths], webhooks=True)
    async with _worker(paths[0]) as zero, _worker(paths[1]) as one:
        await server.start()
        try:
            yield f"http://127.0.0.1:{port}", server, [zero, one]
        finally:
            await server.close()


async def _json(response: aiohttp.ClientResponse) -> Any:
    return orjson.loads(await response.read())


@pytest.mark.asyncio
async def test_a_workers_private_socket_serves_the_pods_internal_endpoints(
    tmp_path: Path,
) -> None:
    path = tmp_path / "worker.sock"
    async with (
        _worker(path),
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
    ):
        async with session.get("http://worker/healthz") as answer:
            assert answer.status == 200
        for bad in (b'{"resource": "e', b"[]", b'{"resource": 5}'):
            async with session.post("http://worker/internal/wake", data=bad) as answer:
                assert answer.status == 400
        wake = orjson.dumps({"resource": "exec_x"})
        async with session.post("http://worker/internal/wake", data=wake) as answer:
            assert answer.status == 200
            assert await _json(answer) == {"woken": 0}
        body, headers = _delivery("evt_private")
        async with session.post("http://worker/webhooks/gagiteck", data=body, headers=headers) as a:
            assert a.status == 200
            assert await _json(a) == {"status": "accepted", "woken": 0, "wake": "exec_x"}


@pytest.mark.asyncio
async def test_the_public_admin_port_of_one_process_is_unchanged() -> None:
    async with serving_gateway(
        UNUSED_UPSTREAM, admin_listen=HostPort("127.0.0.1", 0), webhook_secret=SECRET
    ) as running:
        assert running.gateway.admin is not None
        base = f"http://127.0.0.1:{running.gateway.admin.port}"
        body, headers = _delivery("evt_public")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/webhooks/gagiteck", data=body, headers=headers) as a:
                assert await _json(a) == {"status": "accepted", "woken": 0}
            async with session.post(f"{base}/internal/wake", data=b"{}") as answer:
                assert answer.status in (404, 405)


@pytest.mark.asyncio
async def test_the_pod_is_healthy_and_ready_only_when_every_worker_is(tmp_path: Path) -> None:
    async with _pod(tmp_path) as (base, server, workers), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as answer:
            assert answer.status == 200
            assert await _json(answer) == {"status": "ok", "workers": 2}
        async with session.get(f"{base}/readyz") as answer:
            assert answer.status == 200
        workers[1].gateway.state = State.DRAINING
        async with session.get(f"{base}/readyz") as answer:
            assert answer.status == 503
            assert await _json(answer) == {"status": "not ready", "workers": ["1"]}
        workers[1].gateway.state = State.SERVING
        server.drain()
        async with session.get(f"{base}/readyz") as answer:
            assert answer.status == 503
        server.draining = False
        admin = workers[0].gateway.admin
        assert admin is not None
        await admin.close()  # worker 0 stops answering
        async with session.get(f"{base}/healthz") as answer:
            assert answer.status == 503
            assert await _json(answer) == {"status": "unhealthy", "workers": ["0"]}
        async with session.get(f"{base}/readyz") as answer:
            assert answer.status == 503
        async with session.get(f"{base}/metrics") as answer:
            assert answer.status == 503  # never a partial sum that reads as a reset


@pytest.mark.asyncio
async def test_a_webhook_is_verified_once_for_the_pod(tmp_path: Path) -> None:
    async with _pod(tmp_path) as (base, _, workers), aiohttp.ClientSession() as session:
        url = f"{base}/webhooks/gagiteck"
        body, headers = _delivery("evt_1")
        async with session.post(url, data=body, headers=headers) as answer:
            assert answer.status == 200
            assert await _json(answer) == {"status": "accepted", "woken": 0}
        async with session.post(url, data=body, headers=headers) as answer:
            assert answer.status == 409  # the worker that verified it remembers it
        async with session.post(url, data=_delivery("evt_2", "wrong")[0], headers=headers) as a:
            assert a.status == 401
        async with session.get(f"{base}/metrics") as answer:
            assert answer.status == 200
            assert _accepted(await answer.text()) == 1
        accepted = [worker.gateway.admin.webhooks_accepted for worker in workers]  # type: ignore[union-attr]
        assert accepted == [1, 0]
        admin = workers[0].gateway.admin
        assert admin is not None
        await admin.close()  # the first worker refuses the connection: the next verifies
        body, headers = _delivery("evt_3")
        async with session.post(url, data=body, headers=headers) as answer:
            assert answer.status == 200
        assert workers[1].gateway.admin is not None
        assert workers[1].gateway.admin.webhooks_accepted == 1


def test_the_pod_admin_port_in_use_stops_start_up() -> None:
    (taken,) = bind_admin(HostPort("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="GATEWAY_ADMIN_LISTEN"):
            bind_admin(HostPort("127.0.0.1", port))
    finally:
        taken.close()


def test_the_parent_gives_each_worker_a_private_socket() -> None:
    config = GatewayConfig(admin_listen=HostPort("127.0.0.1", 0), workers=2)
    pod = PodAdmin.prepare(config)
    try:
        assert pod.directory is not None
        assert pod.directory.stat().st_mode & 0o777 == 0o700
        worker = pod.worker_config(config, 1)
        assert worker.admin_listen == PrivateSocket.at(str(pod.directory / "worker-1.sock"))
        assert worker.listen == config.listen
        assert pod.server(2) is not None
    finally:
        pod.close()
    assert not pod.directory.exists()
    off = GatewayConfig(admin_listen=None, workers=2)
    assert PodAdmin.prepare(off).worker_config(off, 0) is off
