"""The error table against both forms of the API: the same failures, provoked for real on
the emulator in its reference and its deployed dialect (whose error bodies differ: the
documented `{detail, code, status}` and FastAPI's), reach callers as the same statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from gagiteck.v1 import agent_pb2, agent_pb2_grpc, auth_pb2, auth_pb2_grpc

from gateway.emulator import EmulatorConfig, Faults, running_emulator
from tests.support.harness import RunningGateway, details_of, serving_gateway

DIALECTS = ("reference", "deployed")


@dataclass
class Stack:
    dialect: str
    gateway: RunningGateway
    agents: agent_pb2_grpc.AgentServiceAsyncStub
    auth: auth_pb2_grpc.AuthServiceAsyncStub


def _stack_config(dialect: str, **settings: Any) -> EmulatorConfig:
    return EmulatorConfig(open_mode=True, dialect=dialect, **settings)  # type: ignore[arg-type]


@pytest_asyncio.fixture(params=DIALECTS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    dialect = request.param
    async with (
        running_emulator(_stack_config(dialect)) as emulator,
        serving_gateway(emulator.url, retry_max_attempts=1) as gateway,
    ):
        yield Stack(
            dialect,
            gateway,
            agent_pb2_grpc.AgentServiceStub(gateway.channel),
            auth_pb2_grpc.AuthServiceStub(gateway.channel),
        )


async def _failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


Case = Callable[[Stack], Awaitable[Any]]


def _missing_agent(stack: Stack) -> Awaitable[Any]:
    return stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_nope"), timeout=5)


def _nameless_agent(stack: Stack) -> Awaitable[Any]:
    return stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(system_prompt="x")), timeout=5
    )


def _page_too_large(stack: Stack) -> Awaitable[Any]:
    return stack.agents.ListAgents(agent_pb2.ListAgentsRequest(limit=1000), timeout=5)


def _bad_credential(stack: Stack) -> Awaitable[Any]:
    # Not a bearer credential: open mode takes any bearer value as the demo user.
    return stack.auth.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(),
        metadata=(("authorization", "Basic dXNlcjpwYXNz"),),
        timeout=5,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "code", "violation"),
    [
        pytest.param(_missing_agent, grpc.StatusCode.NOT_FOUND, None, id="missing"),
        pytest.param(_nameless_agent, grpc.StatusCode.INVALID_ARGUMENT, "name", id="invalid-body"),
        pytest.param(
            _page_too_large, grpc.StatusCode.INVALID_ARGUMENT, "limit", id="invalid-query"
        ),
        pytest.param(_bad_credential, grpc.StatusCode.UNAUTHENTICATED, None, id="credential"),
    ],
)
async def test_the_same_failure_is_the_same_status_in_both_forms(
    stack: Stack, case: Case, code: grpc.StatusCode, violation: str | None
) -> None:
    error = await _failure(case(stack))
    assert error.code() is code, (stack.dialect, error.details())
    details = details_of(error)
    info = details["ErrorInfo"]
    assert info.domain == "127.0.0.1"
    assert info.metadata["http_status"] in {"400", "401", "404", "422"}
    assert details["RequestInfo"].request_id
    if violation is not None:
        fields = {v.field for v in details["BadRequest"].field_violations}
        assert violation in fields, (stack.dialect, fields)


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_rate_limits_carry_retry_info_in_both_forms(dialect: str) -> None:
    config = _stack_config(dialect, rate_limit_per_window=1, rate_window_seconds=30)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(emulator.url, retry_max_attempts=1) as gateway,
    ):
        agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
        await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)
        error = await _failure(agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=0.5))
    # the upstream's 429, or the gateway holding calls back until the window reopens
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = details_of(error)
    assert details["RetryInfo"].retry_delay.seconds > 0
    assert details["QuotaFailure"].violations


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("status", "code"),
    [(503, grpc.StatusCode.UNAVAILABLE), (500, grpc.StatusCode.INTERNAL)],
)
async def test_server_errors_in_both_forms(
    dialect: str, status: int, code: grpc.StatusCode
) -> None:
    config = _stack_config(dialect, faults=Faults(error_rate=1.0, error_status=status, seed=1))
    async with (
        running_emulator(config) as emulator,
        serving_gateway(emulator.url, retry_max_attempts=1) as gateway,
    ):
        agents = agent_pb2_grpc.AgentServiceStub(gateway.channel)
        error = await _failure(agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=5))
    assert error.code() is code
    assert details_of(error)["ErrorInfo"].metadata["http_status"] == str(status)
