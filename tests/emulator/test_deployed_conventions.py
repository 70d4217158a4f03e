"""Deployed dialect: FastAPI's conventions (errors, unknown routes, bodies), the service's
headers, health, and the emulator's own knobs (limits, faults, idempotency, reset)."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import pytest

from gateway.emulator import (
    ConfigError,
    EmulatorConfig,
    Faults,
    RunningEmulator,
    running_emulator,
    serve_forever,
)

from .deployed_testkit import SECURITY_HEADERS, assert_answer, deployed_config, detail
from .emulator_testkit import Api


def test_the_dialect_is_validated() -> None:
    assert EmulatorConfig().dialect == "reference"
    assert EmulatorConfig(dialect="deployed").dialect == "deployed"
    with pytest.raises(ConfigError):
        EmulatorConfig(dialect="fastapi")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_health_and_root(dapi: Api) -> None:
    health = await dapi.get("/health")
    assert assert_answer(health, "GET", "/health") == {
        "status": "healthy",
        "version": "0.2.1",
        "database": "connected",
        "redis": "connected",
    }
    root = await dapi.get("/")
    assert assert_answer(root, "GET", "/") == {
        "name": "Gagiteck AI SaaS Platform",
        "version": "0.2.1",
        "docs": "/docs",
    }


@pytest.mark.asyncio
async def test_the_reference_dialect_is_untouched(anon: Api, api: Api) -> None:
    for path in ("/health", "/", "/v1/search/suggestions?q=a", "/v1/access/permissions"):
        reply = await api.get(path)
        assert reply.status == 404, path
        assert reply.body["code"] == "NOT_FOUND"
    unauthenticated = await anon.get("/v1/agents")
    assert unauthenticated.body == {
        "detail": "Not authenticated",
        "code": "UNAUTHORIZED",
        "status": 401,
    }
    assert "X-RateLimit-Limit" in unauthenticated.headers
    assert "X-Frame-Options" not in unauthenticated.headers


@pytest.mark.asyncio
async def test_unknown_routes_methods_and_slashes(dapi: Api) -> None:
    assert detail(await dapi.get("/v1/nothing"), 404) == "Not Found"
    wrong = await dapi.call("PUT", "/v1/agents")
    assert detail(wrong, 405) == "Method Not Allowed"
    assert wrong.headers["Allow"] == "GET"
    async with dapi.session.get(dapi.base + "/v1/agents/?limit=5", allow_redirects=False) as resp:
        assert resp.status == 307
        assert resp.headers["Location"] == dapi.base + "/v1/agents?limit=5"
    assert detail(await dapi.get("/v1/nothing/"), 404) == "Not Found"
    events_as_id = await dapi.delete("/v1/webhooks/events")
    assert detail(events_as_id, 404) == "Webhook not found"


@pytest.mark.asyncio
async def test_bodies_are_read_as_fastapi_reads_them(dapi: Api) -> None:
    malformed = await dapi.post("/v1/agents", data=b'{"name": ', headers=_json())
    assert malformed.body["detail"] == [
        {
            "type": "json_invalid",
            "loc": ["body", 9],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "Expecting value"},
        }
    ]
    as_text = await dapi.post(
        "/v1/agents", data=b'{"name": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert as_text.body["detail"] == [
        {
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": '{"name": "x"}',
        }
    ]
    vendor = await dapi.post(
        "/v1/agents", data=b'{"name": "x"}', headers={"Content-Type": "application/vnd.x+json"}
    )
    assert vendor.status == 201
    listed = await dapi.get("/v1/agents?limit=abc&limit=2")
    assert listed.body["limit"] == 2  # the last of repeated parameters counts


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


@pytest.mark.asyncio
async def test_query_and_body_problems_come_together(dapi: Api) -> None:
    reply = await dapi.patch(
        "/v1/access/team/members/m", {"role_id": 5}, headers={"X-Request-ID": "r-1"}
    )
    assert reply.status == 422
    assert reply.headers["X-Request-ID"] == "r-1"
    agents = await dapi.get("/v1/executions?limit=x&offset=-1")
    assert [i["loc"] for i in agents.body["detail"]] == [["query", "limit"], ["query", "offset"]]


@pytest.mark.asyncio
async def test_the_service_headers(dapi: Api, dkey: Api) -> None:
    for reply in (await dapi.get("/v1/agents"), await dapi.get("/v1/nothing")):
        for name in SECURITY_HEADERS:
            assert name in reply.headers, name
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert "Cache-Control" not in reply.headers
        assert "X-RateLimit-Limit" not in reply.headers
        assert reply.headers["X-Request-ID"]
    auth = await dkey.get("/v1/auth/api-keys")
    assert auth.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, private"
    assert (auth.headers["Pragma"], auth.headers["Expires"]) == ("no-cache", "0")


@pytest.mark.asyncio
async def test_a_configured_rate_limit_still_applies() -> None:
    config = deployed_config(rate_limit_per_window=2, rate_window_seconds=60)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        api = Api(session, running.url)
        first = await api.get("/v1/agents")
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert first.headers["X-RateLimit-Remaining"] == "1"
        await api.get("/v1/agents")
        limited = await api.get("/v1/agents")
        assert detail(limited, 429) == "Rate limit exceeded"
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await api.get("/health")).status == 200


@pytest.mark.asyncio
async def test_faults_answer_in_fastapi_shape(dapi: Api, deployed: RunningEmulator) -> None:
    deployed.state.set_faults(Faults(error_rate=1.0, error_status=503, paths="^/v1/agents"))
    faulted = await dapi.get("/v1/agents")
    assert faulted.status == 503
    assert set(faulted.body) == {"detail"}
    assert (await dapi.get("/v1/workflows")).status == 200
    deployed.state.set_faults(Faults(malformed_rate=1.0))
    assert (await dapi.get("/v1/agents")).headers["Content-Type"].startswith("text/html")
    assert (await dapi.get("/openapi.json")).status == 200


@pytest.mark.asyncio
async def test_idempotency_keys(dapi: Api, deployed: RunningEmulator) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await dapi.post("/v1/agents", {"name": "once"}, headers=headers)
    replay = await dapi.post("/v1/agents", {"name": "once"}, headers=headers)
    assert (first.status, replay.status) == (201, 201)
    assert replay.body == first.body
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await dapi.get("/v1/agents")).body["total"] == 1
    reused = await dapi.post("/v1/agents", {"name": "other"}, headers=headers)
    assert detail(reused, 422) == "Idempotency-Key was already used with a different request"
    someone_else = dapi.as_token("anything")
    fresh = await someone_else.post("/v1/agents", {"name": "once"}, headers=headers)
    assert "Idempotent-Replayed" not in fresh.headers
    assert (await dapi.get("/v1/agents")).body["total"] == 2


@pytest.mark.asyncio
async def test_reset_forgets_the_deployed_data(dapi: Api, deployed: RunningEmulator) -> None:
    await dapi.post("/v1/access/roles", {"name": "r", "permissions": []})
    await dapi.post("/v1/access/team/members", {"email": "a@b.c", "role_id": "admin"})
    await dapi.post("/v1/agents", {"name": "a"})
    assert (await dapi.post("/_emulator/reset")).status == 204
    assert len((await dapi.get("/v1/access/roles")).body) == 4
    assert (await dapi.get("/v1/access/team")).body == {"message": "No team configured"}
    assert (await dapi.get("/v1/agents")).body["total"] == 0
    stats = (await dapi.get("/_emulator/stats")).body
    assert stats["requests_total"] == 3


@pytest.mark.asyncio
async def test_requests_are_recorded_with_their_routes(
    dapi: Api, deployed: RunningEmulator
) -> None:
    await dapi.get("/v1/access/roles/admin")
    await dapi.post("/v1/auth/login", {"email": "demo@gagiteck.local", "password": "x"})
    log = (await dapi.get("/_emulator/requests")).body["data"]
    assert [entry["route"] for entry in log] == [
        "GET /v1/access/roles/{role_id}",
        "POST /v1/auth/login",
    ]
    assert log[1]["body"]["password"] == "***"
    assert deployed.state.stats.creations["agent"] == 0


@pytest.mark.asyncio
async def test_serve_forever_honours_the_dialect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.emulator")
    task = asyncio.create_task(serve_forever(deployed_config(), "127.0.0.1", 0))
    try:
        found = None
        for _ in range(200):
            found = re.search(r"listening on (http://\S+) \(deployed dialect\)", caplog.text)
            if found:
                break
            await asyncio.sleep(0.01)
        assert found is not None, caplog.text
        async with aiohttp.ClientSession() as session:
            reply = await Api(session, found.group(1)).get("/health")
            assert reply.body["status"] == "healthy"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
