"""Drift detection against real upstreams: the emulator's deployed dialect (which
publishes the deployed service's OpenAPI shape), the service's own document when it is
present beside the repository, and the start-up check (GATEWAY_CHECK_UPSTREAM)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.server.descriptors import contract_services
from gateway.transcoding.drift import ACCEPTED, UpstreamDrift, load_accepted, report
from gateway.transcoding.openapi import OpenApi
from gateway.transcoding.routes import RouteTable
from tests.support.harness import serving_app, serving_gateway
from tests.support.paths import REPO

DEPLOYED = EmulatorConfig(open_mode=True, dialect="deployed")
SHARED_DOCUMENT = REPO.parent / "shared" / "upstream" / "deployed-openapi.json"
ROUTES = RouteTable.compile(contract_services())


async def _document(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/openapi.json") as answer:
        assert answer.status == 200
        document: dict[str, Any] = await answer.json()
        return document


@pytest.mark.asyncio
async def test_the_deployed_dialect_drifts_only_as_accepted() -> None:
    """Every drift found is in the accepted list, and every accepted line is still found."""
    async with running_emulator(DEPLOYED) as emulator:
        document = OpenApi(await _document(emulator.url))
    found = report(ROUTES, document, load_accepted())
    assert [d.key for d in found.unaccepted] == []
    assert found.stale == []


def test_the_deployed_services_own_document_drifts_only_as_accepted() -> None:
    if not SHARED_DOCUMENT.exists():
        pytest.skip(f"{SHARED_DOCUMENT} is not beside the repository")
    found = report(ROUTES, OpenApi(json.loads(SHARED_DOCUMENT.read_text())), load_accepted())
    assert [d.key for d in found.unaccepted] == []
    assert found.stale == []


@pytest.mark.asyncio
async def test_the_command_prints_drift_and_fails_on_what_is_not_accepted(
    tmp_path: Path,
) -> None:
    async with running_emulator(DEPLOYED) as emulator:
        document = await _document(emulator.url)
    await asyncio.to_thread(_run_the_command, document, tmp_path)


def _run_the_command(document: dict[str, Any], tmp_path: Path) -> None:
    schemas = document["components"]["schemas"]
    del schemas["Agent"]["properties"]["tools"]  # the contract's Agent.tools: never filled
    schemas["Agent"]["properties"]["owner"] = {"type": "string"}  # answered, carried by none
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    command = [sys.executable, "-m", "gateway", "check-upstream", "--openapi", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "DRIFT     AgentService/GetAgent lost-down answer.owner" in done.stdout
    assert "DRIFT     AgentService/GetAgent never-filled answer.tools" in done.stdout
    assert "lost on the way down" in done.stdout
    accepted = tmp_path / "accepted.txt"
    extra = [d.key for d in report(ROUTES, OpenApi(document), set()).found]
    accepted.write_text("# all of them, for this test\n" + "\n".join(extra) + "\n")
    done = subprocess.run(
        [*command, "--accepted", str(accepted)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().endswith("not accepted")


@pytest.mark.asyncio
async def test_start_up_check_passes_against_the_deployed_dialect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.server")
    async with (
        running_emulator(DEPLOYED) as emulator,
        serving_gateway(emulator.url, check_upstream="fail"),
    ):
        pass
    assert any(r.getMessage() == "upstream matches the contract" for r in caplog.records)


@pytest.mark.asyncio
async def test_start_up_check_fails_or_warns_on_drift(caplog: pytest.LogCaptureFixture) -> None:
    async with running_emulator(DEPLOYED) as emulator:
        document = await _document(emulator.url)
    document["components"]["schemas"]["Webhook"]["properties"]["owner"] = {"type": "string"}

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/openapi.json", openapi)
    async with serving_app(app) as url:
        with pytest.raises(UpstreamDrift, match="4 drifts from the contract"):
            async with serving_gateway(url, check_upstream="fail"):
                pass
        caplog.set_level(logging.WARNING, logger="gateway.server")
        async with serving_gateway(url, check_upstream="warn"):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("WebhookService/GetWebhook lost-down answer.owner" in w for w in warnings)


@pytest.mark.asyncio
async def test_start_up_check_without_a_document() -> None:
    """The reference dialect publishes no OpenAPI document: fail refuses to start."""
    async with running_emulator(EmulatorConfig(open_mode=True)) as emulator:
        with pytest.raises(UpstreamDrift, match=r"cannot read .*HTTP 404"):
            async with serving_gateway(emulator.url, check_upstream="fail"):
                pass
        async with serving_gateway(emulator.url, check_upstream="warn"):
            pass


def test_the_accepted_list_ships_with_the_package() -> None:
    assert ACCEPTED.exists()
    assert ACCEPTED.parent.name == "transcoding"
