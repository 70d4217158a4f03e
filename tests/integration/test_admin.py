"""The admin port: readiness through the lifecycle, and webhooks waking watchers."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest
from gagiteck.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)

from gateway.config.parsers import HostPort
from gateway.emulator import EmulatorConfig, running_emulator
from tests.support.harness import serving_gateway
from tests.support.redis_server import RedisServer
from tests.support.webhooks import signed_delivery
from tests.support.workflows import triggered_execution

LOCAL = HostPort("127.0.0.1", 0)


@pytest.mark.asyncio
async def test_health_and_readiness() -> None:
    async with serving_gateway("http://127.0.0.1:9", admin_listen=LOCAL) as running:
        admin = running.gateway.admin
        assert admin is not None
        base = f"http://127.0.0.1:{admin.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with session.post(f"{base}/webhooks/gagiteck", data=b"{}") as response:
                assert response.status in (404, 405)  # no secret configured: no receiver
            running.gateway.state = type(running.gateway.state).DRAINING
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
            running.gateway.state = type(running.gateway.state).SERVING


@pytest.mark.asyncio
async def test_webhooks_wake_watchers_end_to_end() -> None:
    """Polling is slowed to 30 s; only the upstream's signed webhook can end the watch."""
    secret = "whsec_end_to_end"
    config = EmulatorConfig(open_mode=True, step_delay_seconds=0.2)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(
            emulator.url,
            admin_listen=LOCAL,
            webhook_secret=secret,
            watch_min_interval=30.0,
            watch_safety_interval=30.0,
        ) as running,
    ):
        admin = running.gateway.admin
        assert admin is not None
        channel = running.channel
        await webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhook(
            webhook_pb2.CreateWebhookRequest(
                webhook=webhook_pb2.Webhook(
                    url=f"http://127.0.0.1:{admin.port}/webhooks/gagiteck",
                    events=["execution.completed", "execution.failed", "execution.cancelled"],
                    secret=secret,
                )
            ),
            timeout=5,
        )
        execution_id = await triggered_execution(channel, steps=3)
        watch = execution_pb2_grpc.ExecutionServiceStub(channel).WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=execution_id), timeout=10
        )
        try:
            states = [state async for state in watch]
        except grpc.aio.AioRpcError as exc:
            pytest.fail(f"the webhook did not wake the watcher: {exc.code()}")
        assert states[-1].status == execution_pb2.EXECUTION_STATUS_COMPLETED
        assert admin.webhooks_accepted >= 1
        assert emulator.state.stats.webhook_deliveries >= 1


@pytest.mark.asyncio
async def test_a_delivery_accepted_by_one_process_is_a_replay_for_another() -> None:
    """Issue 12, item 7: with several processes each kept its own replay record."""
    secret = "whsec_shared_record"
    with RedisServer() as redis:
        settings: dict[str, Any] = {
            "admin_listen": LOCAL,
            "webhook_secret": secret,
            "redis_url": redis.url,
        }
        async with (
            serving_gateway("http://127.0.0.1:9", **settings) as one,
            serving_gateway("http://127.0.0.1:9", **settings) as two,
        ):
            urls = [
                f"http://127.0.0.1:{running.gateway.admin.port}/webhooks/gagiteck"
                for running in (one, two)
                if running.gateway.admin is not None
            ]
            body, headers = signed_delivery(secret, "evt_shared_1")
            async with aiohttp.ClientSession() as session:
                async with session.post(urls[0], data=body, headers=headers) as answer:
                    assert answer.status == 200
                async with session.post(urls[1], data=body, headers=headers) as answer:
                    assert answer.status == 409
                # Redis gone: neither process can tell, so the sender is asked to come back
                redis.stop()
                body, headers = signed_delivery(secret, "evt_shared_2")
                async with session.post(urls[1], data=body, headers=headers) as answer:
                    assert answer.status == 503
