"""The public surface: exports, configuration validation, lifecycle."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re

import aiohttp
import pytest
from aiohttp import web

import gateway.emulator as emulator_package
from gateway.emulator import (
    ConfigError,
    EmulatorConfig,
    Faults,
    create_app,
    running_emulator,
    serve_forever,
)


def test_public_names_are_exported() -> None:
    for name in emulator_package.__all__:
        assert hasattr(emulator_package, name), name
    assert set(emulator_package.__all__) >= {
        "EmulatorConfig",
        "Faults",
        "create_app",
        "running_emulator",
        "serve_forever",
    }


def test_config_is_frozen_with_sensible_defaults() -> None:
    config = EmulatorConfig()
    assert config.open_mode is False
    assert config.timestamp_style == "naive"
    assert config.rate_limit_per_window is None
    assert config.faults == Faults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.open_mode = True  # type: ignore[misc]
    assert "jwt_secret" not in repr(config)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_keys": ("not-a-ggt-key",)},
        {"jwt_secret": "short"},
        {"rate_limit_per_window": 0},
        {"rate_window_seconds": 0},
        {"concurrency_limit": 0},
        {"step_delay_seconds": -1},
        {"stream_delay_seconds": -0.1},
        {"heartbeat_seconds": 0},
        {"timestamp_style": "local"},
        {"demo_password": "short"},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        EmulatorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"malformed_rate": 2},
        {"error_status": 200},
        {"latency_seconds": -1},
        {"drop_mode": "sometimes"},
        {"malformed_mode": "xml"},
        {"paths": "(unclosed"},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_faults_reject_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_faults_filter_by_path_and_method() -> None:
    faults = Faults(error_rate=1.0, paths=r"^/v1/agents", methods=("post",))
    assert faults.methods == ("POST",)
    assert faults.applies_to("POST", "/v1/agents")
    assert not faults.applies_to("GET", "/v1/agents")
    assert not faults.applies_to("POST", "/v1/workflows")


def test_create_app_builds_an_application() -> None:
    assert isinstance(create_app(EmulatorConfig()), web.Application)


@pytest.mark.asyncio
async def test_running_emulator_serves_on_a_free_port() -> None:
    async with running_emulator(EmulatorConfig()) as running, aiohttp.ClientSession() as session:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.url)
        assert running.port > 0
        assert running.state.config == EmulatorConfig(jwt_secret=running.state.config.jwt_secret)
        async with session.get(running.url + "/_emulator/health") as response:
            assert await response.json() == {"status": "ok"}


@pytest.mark.asyncio
async def test_serve_forever_logs_its_url_and_stops_when_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.emulator")
    task = asyncio.create_task(serve_forever(EmulatorConfig(), "127.0.0.1", 0))
    for _ in range(200):
        if "listening on http://127.0.0.1:" in caplog.text:
            break
        await asyncio.sleep(0.01)
    assert "listening on http://127.0.0.1:" in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
