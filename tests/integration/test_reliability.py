"""Traffic control end to end: faults of a real upstream, and what callers see.

Each test writes the figures it measured to ``build/reliability/<test>.json`` so that
docs/RELIABILITY.md can quote a run (``make test`` or
``pytest tests/integration/test_reliability.py``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from gateway.emulator import EmulatorConfig, Faults, RunningEmulator, running_emulator
from tests.support.harness import RunningGateway, details_of, serving_app, serving_gateway
from tests.support.paths import REPO

FIGURES = REPO / "build" / "reliability"


def record(name: str, figures: dict[str, Any]) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))


def _metrics(gateway: RunningGateway) -> str:
    return gateway.gateway.telemetry.metrics.render().decode()


def _agents(gateway: RunningGateway) -> agent_pb2_grpc.AgentServiceAsyncStub:
    return agent_pb2_grpc.AgentServiceStub(gateway.channel)


async def _create_many(
    gateway: RunningGateway, count: int, concurrency: int = 10
) -> tuple[list[agent_pb2.Agent], list[grpc.aio.AioRpcError]]:
    agents = _agents(gateway)
    made: list[agent_pb2.Agent] = []
    failed: list[grpc.aio.AioRpcError] = []
    names = iter(range(count))

    async def worker() -> None:
        for i in names:
            try:
                made.append(
                    await agents.CreateAgent(
                        agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name=f"agent-{i}")),
                        timeout=20,
                    )
                )
            except grpc.aio.AioRpcError as exc:
                failed.append(exc)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return made, failed


def _stored_agents(emulator: RunningEmulator) -> list[Any]:
    state = emulator.state
    return list(state.store.agents.of(state.demo_user.id))


def _names_in(emulator: RunningEmulator) -> list[str]:
    return [agent.name for agent in _stored_agents(emulator)]


@pytest_asyncio.fixture
async def faulty() -> AsyncIterator[tuple[RunningEmulator, RunningGateway]]:
    config = EmulatorConfig(open_mode=True)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(emulator.url, breaker_failures=1000, retry_budget_ratio=1.0) as gateway,
    ):
        yield emulator, gateway


@pytest.mark.asyncio
async def test_thirty_percent_503_matches_the_retry_arithmetic(
    faulty: tuple[RunningEmulator, RunningGateway],
) -> None:
    emulator, gateway = faulty
    emulator.state.set_faults(Faults(error_rate=0.3, error_status=503, seed=7))
    calls = 400
    made, failed = await _create_many(gateway, calls)
    names = _names_in(emulator)
    expected = calls * 0.3**3  # three attempts, each failing with probability 0.3
    record(
        "503_thirty_percent",
        {
            "calls": calls,
            "failed": len(failed),
            "expected_failed": expected,
            "created": len(names),
            "duplicates": len(names) - len(set(names)),
            "upstream_requests": emulator.state.stats.requests_total,
        },
    )
    assert all(e.code() is grpc.StatusCode.UNAVAILABLE for e in failed)
    assert all(details_of(e)["ErrorInfo"].metadata["attempts"] == "3" for e in failed)
    # binomial(400, 0.027): mean 10.8, standard deviation 3.2
    assert 1 <= len(failed) <= 25
    assert len(names) == len(set(names)) == len(made)


@pytest.mark.asyncio
async def test_commit_then_drop_never_duplicates(
    faulty: tuple[RunningEmulator, RunningGateway],
) -> None:
    emulator, gateway = faulty
    emulator.state.set_faults(
        Faults(drop_rate=0.3, drop_mode="after", paths="^/v1/agents$", methods=("POST",), seed=11)
    )
    calls = 300
    made, failed = await _create_many(gateway, calls)
    names = _names_in(emulator)
    replays = emulator.state.stats.idempotent_replays
    record(
        "commit_then_drop",
        {
            "calls": calls,
            "succeeded": len(made),
            "failed": len(failed),
            "created": len(names),
            "duplicates": len(names) - len(set(names)),
            "idempotent_replays": replays,
        },
    )
    assert len(names) == len(set(names)), "a create was applied twice"
    assert replays > 0
    by_name = {agent.name: agent.id for agent in _stored_agents(emulator)}
    assert all(by_name[agent.name] == agent.id for agent in made)
    # a call that failed three times may still have been created once: never more
    assert len(made) <= len(names) <= len(made) + len(failed)


@pytest.mark.asyncio
async def test_post_without_key_whose_outcome_is_unknown(
    faulty: tuple[RunningEmulator, RunningGateway],
) -> None:
    emulator, _ = faulty
    emulator.state.set_faults(
        Faults(drop_rate=1.0, drop_mode="after", paths="^/v1/agents$", methods=("POST",))
    )
    async with serving_gateway(emulator.url, idempotency_keys=False) as keyless:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _agents(keyless).CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="maybe")), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "OUTCOME_UNKNOWN"
    assert _names_in(emulator) == ["maybe"]  # it was created, and not twice


# --------------------------------------------------------------------------- scripted


@dataclass
class Script:
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    seen: list[float] = field(default_factory=list)
    delay: float = 0.0


@pytest_asyncio.fixture
async def script() -> AsyncIterator[tuple[Script, Callable[..., Any]]]:
    scripted = Script()

    async def answer(request: web.Request) -> web.Response:
        scripted.seen.append(time.monotonic())
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        status, headers = scripted.answers.pop(0) if scripted.answers else scripted.default
        body = (
            {"id": "agent_1", "name": "x"} if status < 300 else {"detail": "no", "status": status}
        )
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving_app(app) as url:
        yield scripted, lambda **settings: serving_gateway(url, **settings)


@pytest.mark.asyncio
async def test_429_retry_after_is_honoured(script: tuple[Script, Callable[..., Any]]) -> None:
    scripted, gateway_with = script
    scripted.answers = [(429, {"Retry-After": "2"})]
    async with gateway_with() as gateway:
        started = time.monotonic()
        agent = await _agents(gateway).GetAgent(
            agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=6
        )
        waited = scripted.seen[1] - scripted.seen[0]
        assert agent.id == "agent_1"
        assert waited >= 2.0, f"retried {waited:.3f}s after a Retry-After of 2 s"

        scripted.answers = [(429, {"Retry-After": "2"})]
        scripted.seen.clear()
        await asyncio.sleep(2.1)  # the window the first 429 opened is over
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _agents(gateway).GetAgent(
                agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=1
            )
        refused_after = time.monotonic() - started
    retry = details_of(caught.value)["RetryInfo"].retry_delay
    record(
        "retry_after",
        {
            "retry_after_s": 2,
            "retried_after_s": waited,
            "short_deadline_failed_after_s": refused_after,
        },
    )
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry.seconds + retry.nanos / 1e9 >= 2.0
    assert len(scripted.seen) == 1, "no second attempt inside a 1 s deadline"
    assert refused_after < 0.5


@pytest.mark.asyncio
async def test_spent_window_holds_requests_until_reset(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    scripted, gateway_with = script
    reset = int(time.time()) + 2
    scripted.answers = [(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})]
    async with gateway_with() as gateway:
        agents = _agents(gateway)
        await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
        await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    held = scripted.seen[1] - scripted.seen[0]
    record("upstream_window", {"held_s": held, "reset_in_s": reset - time.time() + held})
    assert scripted.seen[1] >= scripted.seen[0] + 0.9, "the second request went out early"


@pytest.mark.asyncio
async def test_breaker_opens_fails_fast_and_recovers(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    scripted, gateway_with = script
    scripted.default = (503, {})
    async with gateway_with(
        breaker_failures=3, breaker_open_seconds=0.5, retry_max_attempts=1
    ) as gateway:
        agents = _agents(gateway)
        request = agent_pb2.GetAgentRequest(agent_id="agent_1")
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await agents.GetAgent(request, timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        sent = len(scripted.seen)
        fast: list[float] = []
        for _ in range(20):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await agents.GetAgent(request, timeout=5)
            fast.append(time.perf_counter() - started)
            assert details_of(caught.value)["ErrorInfo"].reason == "CIRCUIT_OPEN"
            assert "RetryInfo" in details_of(caught.value)
        assert len(scripted.seen) == sent, "requests went upstream while the breaker was open"
        scraped = _metrics(gateway)
        route = 'breaker="GET /v1/agents/{agent_id}"'
        assert f'gateway_circuit_breaker_state{{{route},state="open"}} 1.0' in scraped
        assert f"gateway_circuit_breaker_opened_total{{{route}}} 1.0" in scraped
        assert f"gateway_circuit_breaker_fast_failures_total{{{route}}} 20.0" in scraped
        # one route failing is not the whole upstream failing
        assert 'gateway_circuit_breaker_state{breaker="upstream",state="closed"} 1.0' in scraped
        scripted.default = (200, {})
        await asyncio.sleep(0.6)
        assert (await agents.GetAgent(request, timeout=5)).id == "agent_1"  # the probe
        assert (await agents.GetAgent(request, timeout=5)).id == "agent_1"  # closed again
        assert f'gateway_circuit_breaker_state{{{route},state="closed"}} 1.0' in _metrics(gateway)
    median_ms = statistics.median(fast) * 1e3
    record("breaker", {"failures_to_open": 3, "open_call_median_ms": median_ms})
    assert median_ms < 20


@pytest.mark.asyncio
async def test_wait_beyond_the_deadline_is_refused_at_once(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    _, gateway_with = script
    async with gateway_with(caller_rate_limit_rps=1.0, caller_rate_limit_burst=1.0) as gateway:
        agents = _agents(gateway)
        request = agent_pb2.GetAgentRequest(agent_id="agent_1")
        metadata = (("authorization", "Bearer ggt_reliability_caller"),)
        await agents.GetAgent(request, metadata=metadata, timeout=5)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agents.GetAgent(request, metadata=metadata, timeout=0.3)
        elapsed = time.monotonic() - started
        # another caller has a bucket of its own
        await agents.GetAgent(request, metadata=(("authorization", "Bearer other"),), timeout=5)
        scraped = _metrics(gateway)
    assert 'gateway_limiter_calls_total{outcome="refused"} 1.0' in scraped
    assert 'gateway_limiter_calls_total{outcome="admitted"} 2.0' in scraped
    details = details_of(caught.value)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "GATEWAY_RATE_LIMITED"
    subject = details["QuotaFailure"].violations[0].subject
    assert subject.startswith("caller:")
    assert "ggt_" not in subject
    assert details["RetryInfo"].retry_delay.nanos > 0
    assert elapsed < 0.2


@pytest.mark.asyncio
async def test_overload_beyond_the_queue_is_refused_quickly(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    scripted, gateway_with = script
    scripted.delay = 0.5
    async with gateway_with(upstream_concurrency=2, upstream_queue=2) as gateway:
        agents = _agents(gateway)
        request = agent_pb2.GetAgentRequest(agent_id="agent_1")

        async def one() -> tuple[float, grpc.StatusCode]:
            started = time.monotonic()
            try:
                await agents.GetAgent(request, timeout=5)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            return time.monotonic() - started, code

        results = await asyncio.gather(*(one() for _ in range(12)))
        scraped = _metrics(gateway)
    assert 'gateway_upstream_queue_refusals_total{reason="full"} 8.0' in scraped
    assert "gateway_upstream_queue_depth 0.0" in scraped
    admitted = [t for t, code in results if code is grpc.StatusCode.OK]
    refused = [t for t, code in results if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    record(
        "overload",
        {
            "offered": 12,
            "admitted": len(admitted),
            "refused": len(refused),
            "admitted_latency_max_s": max(admitted),
            "refused_latency_max_s": max(refused),
        },
    )
    assert len(admitted) == 4  # 2 in flight + 2 queued
    assert len(refused) == 8
    assert max(refused) < 0.3 < min(admitted)


@pytest.mark.asyncio
async def test_waits_and_refusals_are_span_events(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.telemetry.settings import TelemetryConfig

    _, gateway_with = script
    exporter = InMemorySpanExporter()
    async with gateway_with(
        caller_rate_limit_rps=5.0,
        caller_rate_limit_burst=1.0,
        telemetry=TelemetryConfig(span_exporter=exporter),
    ) as gateway:
        agents = _agents(gateway)
        request = agent_pb2.GetAgentRequest(agent_id="agent_1")
        metadata = (("authorization", "Bearer ggt_span_events"),)
        await agents.GetAgent(request, metadata=metadata, timeout=5)
        await agents.GetAgent(request, metadata=metadata, timeout=5)  # waits ~0.2 s
        with pytest.raises(grpc.aio.AioRpcError):
            await agents.GetAgent(request, metadata=metadata, timeout=0.05)
        assert gateway.gateway.telemetry.force_flush()
    servers = [s for s in exporter.get_finished_spans() if s.name.endswith("/GetAgent")]
    events = [[e.name for e in span.events] for span in servers]
    assert events[0] == []
    assert events[1] == ["gateway.traffic.waited"]
    assert events[2] == ["gateway.traffic.refused"]
    waited = (servers[1].events[0].attributes or {})["seconds"]
    assert isinstance(waited, float)
    assert 0.1 < waited < 0.5
    refused = servers[2].events[0].attributes or {}
    assert refused["reason"] == "GATEWAY_RATE_LIMITED"


# --------------------------------------------------------------------------- one admission path


@pytest.mark.asyncio
async def test_an_open_breaker_refuses_streams_too(
    script: tuple[Script, Callable[..., Any]],
) -> None:
    """Streams are admitted like unary calls: no event stream is opened to an upstream
    whose every route is failing."""
    scripted, gateway_with = script
    scripted.default = (503, {})
    async with gateway_with(breaker_failures=3, retry_max_attempts=1) as gateway:
        agents = _agents(gateway)
        for _ in range(2):  # failures on two routes, nothing succeeding in between
            with pytest.raises(grpc.aio.AioRpcError):
                await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)
        sent = len(scripted.seen)
        stream = agents.StreamAgentRun(
            agent_pb2.StreamAgentRunRequest(agent_id="a", message="hi"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert details_of(caught.value)["ErrorInfo"].reason == "CIRCUIT_OPEN"
        assert len(scripted.seen) == sent


@pytest.mark.asyncio
async def test_the_cancel_of_an_abandoned_run_is_retried_like_any_request() -> None:
    """The run-cancel POST goes through traffic control: a 503 to it is retried."""
    cancels: list[int] = []
    started = asyncio.Event()

    async def run(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        event = b'event: run.started\ndata: {"run_id": "run_1", "agent_id": "agent_1"}\n\n'
        await response.write(event)
        started.set()
        await asyncio.sleep(30)  # the caller leaves long before this
        return response

    async def cancel(request: web.Request) -> web.Response:
        cancels.append(503 if not cancels else 200)
        return web.json_response({"status": "cancelled"}, status=cancels[-1])

    app = web.Application()
    app.router.add_post("/v1/agents/{agent_id}/run", run)
    app.router.add_post("/v1/agents/{agent_id}/runs/{run_id}/cancel", cancel)
    async with serving_app(app) as url, serving_gateway(url) as gateway:
        call = _agents(gateway).StreamAgentRun(
            agent_pb2.StreamAgentRunRequest(agent_id="agent_1", message="hi"), timeout=10
        )
        await call.read()
        await started.wait()
        call.cancel()
        for _ in range(200):
            if len(cancels) >= 2:
                break
            await asyncio.sleep(0.02)
        await gateway.gateway.relay.close()
    assert cancels == [503, 200]


async def _mixed_load(gateway: RunningGateway, seconds: float) -> dict[str, dict[str, int]]:
    """Creates and reads side by side for ``seconds``; outcomes by kind of call."""
    agents = _agents(gateway)
    outcomes: dict[str, dict[str, int]] = {"create": {}, "read": {}}
    stop = time.monotonic() + seconds

    async def one(kind: str) -> None:
        while time.monotonic() < stop:
            try:
                if kind == "create":
                    await agents.CreateAgent(
                        agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="storm")),
                        timeout=5,
                    )
                else:
                    await agents.ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)
                outcome = "OK"
            except grpc.aio.AioRpcError as exc:
                info = details_of(exc).get("ErrorInfo")
                outcome = info.reason if info is not None else exc.code().name
            outcomes[kind][outcome] = outcomes[kind].get(outcome, 0) + 1
            if kind == "read":
                await asyncio.sleep(0.05)  # reads are the lighter traffic

    await asyncio.gather(*(one("create") for _ in range(8)), *(one("read") for _ in range(2)))
    return outcomes


@pytest.mark.asyncio
async def test_a_storm_on_one_route_leaves_the_others_served() -> None:
    """Issue 15, item 1: a storm of dropped creates opened the one breaker, and every
    read failed fast with CIRCUIT_OPEN for the breaker's open time."""
    storm = Faults(drop_rate=0.9, drop_mode="after", paths=r"^/v1/agents$", methods=("POST",))
    async with (
        running_emulator(EmulatorConfig(open_mode=True)) as emulator,
        serving_gateway(
            emulator.url, breaker_failures=5, breaker_open_seconds=2.0, retry_max_attempts=2
        ) as gateway,
    ):
        calm = await _mixed_load(gateway, 1.0)
        emulator.state.set_faults(storm)
        stormy = await _mixed_load(gateway, 3.0)
    reads = stormy["read"]
    record(
        "route_storm",
        {"calm": calm, "storm": stormy, "read_success": reads.get("OK", 0) / sum(reads.values())},
    )
    assert calm["read"] == {"OK": calm["read"]["OK"]}
    assert reads == {"OK": reads["OK"]}, reads  # every read served through the storm
    assert stormy["create"].get("CIRCUIT_OPEN", 0) > 0  # while creates failed fast
