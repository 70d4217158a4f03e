"""Idempotency-Key: one execution per (account, key)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.emulator import RunningEmulator

from .emulator_testkit import Api, Receiver, SignUp


@pytest.mark.asyncio
async def test_same_key_same_body_replays(api: Api, emulator: RunningEmulator) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = await api.post("/v1/agents", {"name": "once"}, headers=headers)
    second = await api.post("/v1/agents", {"name": "once"}, headers=headers)
    assert (first.status, second.status) == (201, 201)
    assert second.raw == first.raw
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert emulator.state.stats.creations["agent"] == 1
    assert (await api.get("/v1/agents")).body["total"] == 1
    stats = (await api.get("/_emulator/stats")).body
    assert stats["idempotent_replays"] == 1


@pytest.mark.asyncio
async def test_same_key_other_body_is_refused(api: Api) -> None:
    headers = {"Idempotency-Key": "create-2"}
    await api.post("/v1/agents", {"name": "one"}, headers=headers)
    reply = await api.post("/v1/agents", {"name": "two"}, headers=headers)
    assert reply.status == 422
    assert reply.body["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reply.body["status"] == 422


@pytest.mark.asyncio
async def test_keys_are_per_account(api: Api, new_user: SignUp, emulator: RunningEmulator) -> None:
    other = await new_user()
    headers = {"Idempotency-Key": "shared"}
    assert (await api.post("/v1/agents", {"name": "a"}, headers=headers)).status == 201
    reply = await other.post("/v1/agents", {"name": "a"}, headers=headers)
    assert reply.status == 201
    assert "Idempotent-Replayed" not in reply.headers
    assert emulator.state.stats.creations["agent"] == 2


@pytest.mark.asyncio
async def test_key_in_flight_is_a_conflict(api: Api, receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    hook = (await api.post("/v1/webhooks", {"url": receiver.url, "events": []})).body
    headers = {"Idempotency-Key": "slow-test"}
    path = f"/v1/webhooks/{hook['id']}/test"
    first = asyncio.create_task(api.post(path, {}, headers=headers))
    await receiver.arrived.wait()
    second = await api.post(path, {}, headers=headers)
    assert second.status == 409
    assert second.body["code"] == "CONFLICT"
    receiver.gate.set()
    assert (await first).status == 200
    third = await api.post(path, {}, headers=headers)
    assert third.headers["Idempotent-Replayed"] == "true"
    assert len(receiver.received) == 1


@pytest.mark.asyncio
async def test_retry_after_an_unknown_outcome_does_not_duplicate(
    api: Api, emulator: RunningEmulator
) -> None:
    faults = {"drop_rate": 1.0, "drop_mode": "after", "paths": "^/v1/agents$", "methods": ["POST"]}
    assert (await api.post("/_emulator/faults", faults)).status == 200
    headers = {"Idempotency-Key": "unknown-outcome"}
    with pytest.raises(aiohttp.ClientError):
        await api.post("/v1/agents", {"name": "maybe"}, headers=headers)
    assert emulator.state.stats.creations["agent"] == 1
    await api.post("/_emulator/faults", {})
    retry = await api.post("/v1/agents", {"name": "maybe"}, headers=headers)
    assert retry.status == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert emulator.state.stats.creations["agent"] == 1
    assert (await api.get("/v1/agents")).body["total"] == 1


@pytest.mark.asyncio
async def test_server_errors_are_not_stored(api: Api, emulator: RunningEmulator) -> None:
    await api.post("/_emulator/faults", {"error_rate": 1.0, "error_status": 503})
    headers = {"Idempotency-Key": "after-503"}
    assert (await api.post("/v1/agents", {"name": "x"}, headers=headers)).status == 503
    await api.post("/_emulator/faults", {})
    reply = await api.post("/v1/agents", {"name": "x"}, headers=headers)
    assert reply.status == 201
    assert "Idempotent-Replayed" not in reply.headers


@pytest.mark.asyncio
async def test_secrets_count_when_comparing_bodies(api: Api) -> None:
    headers = {"Idempotency-Key": "hook"}
    body = {"url": "https://example.com/h", "events": [], "secret": "one"}
    assert (await api.post("/v1/webhooks", body, headers=headers)).status == 201
    reply = await api.post("/v1/webhooks", {**body, "secret": "two"}, headers=headers)
    assert reply.body["code"] == "IDEMPOTENCY_KEY_REUSED"
