"""Observability end to end: one trace from the caller to the upstream, /metrics, access log.

Spans are captured by an in-memory exporter handed to the gateway through the same seam
the ``OTEL_TRACES_EXPORTER`` exporters use (``TelemetryConfig.span_exporter``), batched
like theirs and flushed with ``Telemetry.force_flush``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.gateway import load_config
from gateway.config.parsers import HostPort
from gateway.emulator import EmulatorConfig, RunningEmulator, running_emulator
from gateway.telemetry.logs import JsonFormatter
from gateway.telemetry.settings import TelemetryConfig
from tests.support.harness import (
    RunningGateway,
    details_of,
    rich_status,
    serving_app,
    serving_gateway,
)
from tests.support.webhooks import signed_delivery

LOCAL = HostPort("127.0.0.1", 0)


def _traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


@dataclass
class Stack:
    emulator: RunningEmulator
    gateway: RunningGateway
    exporter: InMemorySpanExporter
    agents: agent_pb2_grpc.AgentServiceAsyncStub

    def spans(self) -> list[ReadableSpan]:
        assert self.gateway.gateway.telemetry.force_flush()
        return list(self.exporter.get_finished_spans())

    def admin(self) -> str:
        admin = self.gateway.gateway.admin
        assert admin is not None
        return f"http://127.0.0.1:{admin.port}"


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    exporter = InMemorySpanExporter()
    config = EmulatorConfig(open_mode=True, stream_delay_seconds=0.0, step_delay_seconds=0.03)
    async with (
        running_emulator(config) as emulator,
        serving_gateway(
            emulator.url,
            admin_listen=LOCAL,
            telemetry=TelemetryConfig(span_exporter=exporter),
            watch_min_interval=0.02,
            watch_max_interval=0.1,
        ) as gateway,
    ):
        yield Stack(emulator, gateway, exporter, agent_pb2_grpc.AgentServiceStub(gateway.channel))


async def _agent(stack: Stack, metadata: Sequence[tuple[str, str]] = ()) -> agent_pb2.Agent:
    return await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Tracer")),
        metadata=tuple(metadata),
        timeout=5,
    )


def _one(spans: list[ReadableSpan], kind: SpanKind, name: str) -> ReadableSpan:
    found = [s for s in spans if s.kind is kind and s.name == name]
    assert len(found) == 1, [(s.kind, s.name) for s in spans]
    return found[0]


# --------------------------------------------------------------------------- one trace


@pytest.mark.asyncio
async def test_one_trace_from_the_client_to_the_upstream(stack: Stack) -> None:
    trace_id, client_span, traceparent = _traceparent()
    metadata = (("traceparent", traceparent), ("tracestate", "vendor=opaque"))
    agent = await _agent(stack, metadata)

    spans = stack.spans()
    server = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/CreateAgent")
    client = _one(spans, SpanKind.CLIENT, "POST /v1/agents")
    assert server.context is not None
    assert client.context is not None
    # the caller's trace, continued by the gateway's server span …
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == client_span
    assert server.parent.is_remote
    # … then its client span …
    assert client.context.trace_id == server.context.trace_id
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    # … and the upstream request belongs to it, as the emulator recorded it.
    (recorded,) = [r for r in stack.emulator.state.requests.last(10) if r["method"] == "POST"]
    upstream_parent = f"00-{trace_id}-{format(client.context.span_id, '016x')}-01"
    assert recorded["headers"]["traceparent"] == upstream_parent
    assert recorded["headers"]["tracestate"] == "vendor=opaque"

    assert dict(server.attributes or {}) | {"gateway.request_id": "x"} == {
        "rpc.system": "grpc",
        "rpc.service": "gagiteck.v1.AgentService",
        "rpc.method": "CreateAgent",
        "rpc.grpc.status_code": 0,
        "gateway.request_id": "x",
        "gateway.upstream.attempts": 1,
    }
    assert server.status.status_code is StatusCode.UNSET
    attributes = dict(client.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.template"] == "/v1/agents"
    assert attributes["http.response.status_code"] in (200, 201)
    assert attributes["gateway.upstream.attempt"] == 1
    assert attributes["server.address"] == "127.0.0.1"
    assert agent.id not in str(attributes)

    # A span named by the route template, never by the path with its id.
    await stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent.id), timeout=5)
    names = {s.name for s in stack.spans()}
    assert "GET /v1/agents/{agent_id}" in names
    assert not any(agent.id in name for name in names)


@pytest.mark.asyncio
async def test_without_a_caller_trace_the_gateway_starts_one(stack: Stack) -> None:
    await _agent(stack)
    spans = stack.spans()
    server = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/CreateAgent")
    assert server.parent is None
    assert server.context is not None
    (recorded,) = [r for r in stack.emulator.state.requests.last(10) if r["method"] == "POST"]
    assert recorded["headers"]["traceparent"].split("-")[1] == format(
        server.context.trace_id, "032x"
    )


@pytest.mark.asyncio
async def test_client_faults_are_not_span_errors(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_nope"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    spans = stack.spans()
    server = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/GetAgent")
    assert server.status.status_code is StatusCode.UNSET
    assert (server.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    client = _one(spans, SpanKind.CLIENT, "GET /v1/agents/{agent_id}")
    assert (client.attributes or {})["http.response.status_code"] == 404
    assert (client.attributes or {})["error.type"] == "404"
    assert client.status.status_code is StatusCode.UNSET  # the caller's fault, passed through


@pytest.mark.asyncio
async def test_server_faults_are_span_errors() -> None:
    exporter = InMemorySpanExporter()
    async with serving_gateway(
        "http://127.0.0.1:9", telemetry=TelemetryConfig(span_exporter=exporter)
    ) as running:
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="a"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert running.gateway.telemetry.force_flush()
    spans = list(exporter.get_finished_spans())
    server = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/GetAgent")
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description is not None
    assert server.status.description.startswith("UNAVAILABLE: cannot connect")
    # a refused connection is retried: one client span per attempt, each failed the same way
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert [s.name for s in clients] == ["GET /v1/agents/{agent_id}"] * 3
    for client in clients:
        assert (client.attributes or {})["error.type"] == "UPSTREAM_UNREACHABLE"
        assert "http.response.status_code" not in (client.attributes or {})


@pytest.mark.asyncio
async def test_an_unsampled_caller_gets_no_spans_but_its_trace_goes_on(stack: Stack) -> None:
    trace_id, _, traceparent = _traceparent(sampled=False)
    await _agent(stack, [("traceparent", traceparent)])
    assert stack.spans() == []
    (recorded,) = [r for r in stack.emulator.state.requests.last(10) if r["method"] == "POST"]
    version, upstream_trace, _, flags = recorded["headers"]["traceparent"].split("-")
    assert (version, upstream_trace, flags) == ("00", trace_id, "00")


@pytest.mark.asyncio
async def test_ratio_sampler_reads_the_caller_decision_and_samples_new_traces() -> None:
    exporter = InMemorySpanExporter()
    telemetry = TelemetryConfig(
        span_exporter=exporter, sampler="parentbased_traceidratio", sampler_ratio=0.0
    )
    async with (
        running_emulator(EmulatorConfig(open_mode=True)) as emulator,
        serving_gateway(emulator.url, telemetry=telemetry) as running,
    ):
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        request = agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="x"))
        await agents.CreateAgent(request, timeout=5)  # a new trace: ratio 0 drops it
        _, _, sampled = _traceparent(sampled=True)
        await agents.CreateAgent(request, metadata=(("traceparent", sampled),), timeout=5)
        assert running.gateway.telemetry.force_flush()
    spans = exporter.get_finished_spans()
    assert sorted(s.kind.name for s in spans) == ["CLIENT", "SERVER"]  # the caller's only
    assert {format(s.context.trace_id, "032x") for s in spans if s.context} == {
        sampled.split("-")[1]
    }


# --------------------------------------------------------------------------- propagation


@dataclass
class Recorder:
    headers: list[dict[str, str]]


@pytest_asyncio.fixture
async def echo_upstream() -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder([])

    async def agent(request: web.Request) -> web.Response:
        recorder.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"id": "agent_1", "name": "x"})

    app = web.Application()
    app.router.add_get("/v1/agents/{agent_id}", agent)
    async with serving_app(app) as url:
        yield url, recorder


@pytest.mark.asyncio
@pytest.mark.parametrize("tracing", [False, True], ids=["tracing-off", "tracing-on"])
async def test_traceparent_tracestate_and_baggage_reach_the_upstream(
    echo_upstream: tuple[str, Recorder], tracing: bool
) -> None:
    url, recorder = echo_upstream
    telemetry = TelemetryConfig(span_exporter=InMemorySpanExporter() if tracing else None)
    trace_id, span_id, traceparent = _traceparent()
    metadata = (
        ("traceparent", traceparent),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("baggage", "tenant=acme,region=eu"),
    )
    async with serving_gateway(url, telemetry=telemetry) as running:
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        await agents.GetAgent(
            agent_pb2.GetAgentRequest(agent_id="agent_1"), metadata=metadata, timeout=5
        )
    (headers,) = recorder.headers
    version, upstream_trace, parent, flags = headers["traceparent"].split("-")
    assert (version, upstream_trace, flags) == ("00", trace_id, "01")
    assert (parent == span_id) is not tracing  # tracing on: the gateway's client span
    assert headers["tracestate"] == "congo=t61rcWkgMzE"
    assert sorted(headers["baggage"].split(",")) == ["region=eu", "tenant=acme"]


@pytest.mark.asyncio
async def test_no_caller_trace_and_tracing_off_sends_no_trace_headers(
    echo_upstream: tuple[str, Recorder],
) -> None:
    url, recorder = echo_upstream
    async with serving_gateway(url) as running:
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_1"), timeout=5)
    (headers,) = recorder.headers
    assert not {"traceparent", "tracestate", "baggage"} & set(headers)


# --------------------------------------------------------------------------- streams


def _struct(**values: str | float) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


QUICK = [
    workflow_pb2.WorkflowStep(id=f"s{i}", type="transform", config=_struct(template="x"))
    for i in range(3)
]
SLOW = [workflow_pb2.WorkflowStep(id="wait", type="delay", config=_struct(seconds=3))]


async def _execution(
    channel: grpc.aio.Channel,
    metadata: Sequence[tuple[str, str]] = (),
    steps: Sequence[workflow_pb2.WorkflowStep] = QUICK,
) -> str:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    workflow = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(workflow=workflow_pb2.Workflow(name="w", steps=steps)),
        metadata=tuple(metadata),
        timeout=5,
    )
    execution = await workflows.TriggerWorkflow(
        workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id),
        metadata=tuple(metadata),
        timeout=5,
    )
    return execution.id


@pytest.mark.asyncio
async def test_stream_and_watch_spans_count_what_they_carried(stack: Stack) -> None:
    agent = await _agent(stack)
    request = agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="count to three")
    events = [e async for e in stack.agents.StreamAgentRun(request, timeout=10)]
    execution_id = await _execution(stack.gateway.channel)
    watch = execution_pb2_grpc.ExecutionServiceStub(stack.gateway.channel).WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=execution_id), timeout=10
    )
    states = [s async for s in watch]

    spans = stack.spans()
    relay = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/StreamAgentRun")
    assert (relay.attributes or {})["gateway.stream.messages"] == len(events)
    sse = _one(spans, SpanKind.CLIENT, "POST /v1/agents/{agent_id}/run")
    assert (sse.attributes or {})["gateway.stream.events"] == len(events)
    assert sse.parent is not None
    assert relay.context is not None
    assert sse.parent.span_id == relay.context.span_id

    watcher = _one(spans, SpanKind.SERVER, "gagiteck.v1.ExecutionService/WatchExecution")
    assert (watcher.attributes or {})["gateway.stream.messages"] == len(states)
    assert watcher.context is not None
    polls = [s for s in spans if s.name == "GET /v1/executions/{execution_id}"]
    assert len(polls) >= len(states)
    assert all(p.parent is not None and p.parent.span_id == watcher.context.span_id for p in polls)


@pytest.mark.asyncio
async def test_health_checks_and_reflection_are_not_traced(stack: Stack) -> None:
    channel = stack.gateway.channel
    health: Any = health_pb2_grpc.HealthStub(channel)
    await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(cast(Any, channel))
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    assert [a async for a in answers]
    assert stack.spans() == []


# --------------------------------------------------------------------------- metrics


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert found, f"no {name} with {labels}"
    return sum(found)


@pytest.mark.asyncio
async def test_metrics_are_scraped_with_bounded_labels(stack: Stack) -> None:
    agent = await _agent(stack)
    await stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent.id), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_nope"), timeout=5)
    request = agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="hi")
    relayed = [e async for e in stack.agents.StreamAgentRun(request, timeout=10)]
    execution_id = await _execution(stack.gateway.channel, steps=SLOW)
    watch = execution_pb2_grpc.ExecutionServiceStub(stack.gateway.channel).WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=execution_id), timeout=10
    )
    await watch.read()  # one watcher stays open while we scrape

    async with aiohttp.ClientSession() as session:

        async def scrape() -> str:
            async with session.get(f"{stack.admin()}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return await response.text()

        text = await scrape()
        watch.cancel()
        for _ in range(100):
            after = _samples(await scrape())
            if _value(after, "gateway_rpcs_in_flight", grpc_method="WatchExecution") == 0:
                break
            await asyncio.sleep(0.02)

    samples = _samples(text)
    rpc = "gateway_rpc_duration_seconds_count"
    assert _value(samples, rpc, grpc_method="GetAgent", grpc_code="OK") == 1
    assert _value(samples, rpc, grpc_method="GetAgent", grpc_code="NOT_FOUND") == 1
    assert _value(samples, rpc, grpc_method="StreamAgentRun", grpc_type="server_stream") == 1
    upstream = "gateway_upstream_request_duration_seconds_count"
    assert _value(samples, upstream, route="GET /v1/agents/{agent_id}", status="404") == 1
    assert _value(samples, upstream, route="GET /v1/agents/{agent_id}", status="200") == 1
    assert _value(samples, upstream, route="GET /v1/executions/{execution_id}") >= 1
    assert _value(samples, "gateway_upstream_retries_total", route="GET /v1/agents") == 0
    assert _value(samples, "gateway_rpcs_in_flight", grpc_method="WatchExecution") == 1
    assert _value(samples, "gateway_rpcs_in_flight", grpc_method="GetAgent") == 0
    assert _value(samples, "gateway_streams_open", kind="watch") == 1
    assert _value(samples, "gateway_streams_open", kind="sse") == 0
    assert _value(samples, "gateway_watch_pollers") >= 0
    assert _value(samples, "gateway_upstream_connections_in_use", pool="unary") >= 0
    assert _value(samples, "gateway_upstream_connections_limit", pool="stream") == 256
    assert _value(samples, "gateway_stream_messages_total", grpc_method="StreamAgentRun") == len(
        relayed
    )
    assert _value(samples, "gateway_webhook_deliveries_total", result="accepted") == 0
    assert _value(samples, "gateway_build_info") == 1

    # Labels never carry an id: every route label is a template.
    labels = {v for (_, ls) in samples for (_, v) in ls}
    assert not any(agent.id in v or execution_id in v for v in labels)
    routes = {v for (_, ls) in samples for (k, v) in ls if k == "route"}
    templates = {route.route_template for route in stack.gateway.gateway.routes}
    assert routes == templates

    assert _value(after, "gateway_streams_open", kind="watch") == 0
    assert _value(after, "gateway_rpcs_in_flight", grpc_method="WatchExecution") == 0
    assert _value(after, rpc, grpc_method="WatchExecution", grpc_code="CANCELLED") == 1


# --------------------------------------------------------------------------- access log


@pytest.mark.asyncio
async def test_one_access_log_line_per_call(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    trace_id, _, traceparent = _traceparent()
    caplog.set_level(logging.INFO, logger="gateway.access")
    agent = await _agent(stack, [("traceparent", traceparent), ("x-request-id", "req-1")])
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.agents.GetAgent(agent_pb2.GetAgentRequest(agent_id="agent_x"), timeout=5)
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 2
    created, missing = (vars(r) for r in records)
    spans = stack.spans()
    server = _one(spans, SpanKind.SERVER, "gagiteck.v1.AgentService/CreateAgent")
    assert server.context is not None
    expected: dict[str, Any] = {
        "method": "gagiteck.v1.AgentService/CreateAgent",
        "code": "OK",
        "upstream_status": 201,
        "attempts": 1,
        "request_id": "req-1",
        "trace_id": trace_id,
        "span_id": format(server.context.span_id, "016x"),
    }
    assert {k: created[k] for k in expected} == expected
    assert created["duration_ms"] > 0
    assert (missing["code"], missing["upstream_status"], missing["levelno"]) == (
        "NOT_FOUND",
        404,
        logging.INFO,
    )
    assert agent.id


# --------------------------------------------------------------------------- the canary


class Capture(logging.Handler):
    """Every record at every level, raw (message, extras, exception) and as written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        raw = {k: v for k, v in vars(record).items() if k not in ("msg", "args", "exc_info")}
        self.texts.append(record.getMessage())
        self.texts.append(repr(raw))
        if record.exc_info:
            self.texts.append(logging.Formatter().formatException(record.exc_info))
        self.texts.append(self.format(record))


@pytest_asyncio.fixture
async def capture() -> AsyncIterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _failure_texts(error: grpc.aio.AioRpcError) -> list[str]:
    texts = [str(error.details()), repr(error.trailing_metadata())]
    for detail in rich_status(error).details:
        texts.append(str(detail))
        for name, value in details_of(error).items():
            texts.append(f"{name}: {value}")
    return texts


async def _signed_delivery(session: aiohttp.ClientSession, url: str, secret: str) -> int:
    body, headers = signed_delivery(secret, f"evt_{secrets.token_hex(4)}")
    async with session.post(url, data=body, headers=headers) as response:
        return response.status


@pytest.mark.asyncio
async def test_a_canary_credential_appears_nowhere(capture: Capture) -> None:
    """Every kind of call carries a canary credential; nothing written may contain it."""
    canary = f"CANARY{secrets.token_hex(6)}"
    key, service_key, webhook_secret = f"ggt_{canary}", f"ggt_{canary}svc", f"whsec_{canary}"
    bearer = (("authorization", f"Bearer {key}"),)
    exporter = InMemorySpanExporter()
    failures: list[grpc.aio.AioRpcError] = []
    emulator_config = EmulatorConfig(
        api_keys=(key, service_key), stream_delay_seconds=0.005, step_delay_seconds=0.02
    )
    async with (
        running_emulator(emulator_config) as emulator,
        serving_gateway(
            emulator.url,
            admin_listen=LOCAL,
            auth_mode="passthrough-or-service",
            upstream_api_key=service_key,
            webhook_secret=webhook_secret,
            telemetry=TelemetryConfig(span_exporter=exporter),
            watch_min_interval=0.02,
            watch_max_interval=0.1,
        ) as running,
        aiohttp.ClientSession() as session,
    ):
        admin = running.gateway.admin
        assert admin is not None
        hook_url = f"http://127.0.0.1:{admin.port}/webhooks/gagiteck"
        channel = running.channel
        agents = agent_pb2_grpc.AgentServiceStub(channel)

        async def failing(call: Any) -> None:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            failures.append(caught.value)

        # unary calls that succeed, with the caller's key and with the service key
        agent = await agents.CreateAgent(
            agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Canary")),
            metadata=bearer,
            timeout=5,
        )
        await agents.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent.id), timeout=5)
        # client faults: not found, invalid, a wrong key
        get = agent_pb2.GetAgentRequest(agent_id="agent_missing")
        await failing(agents.GetAgent(get, metadata=bearer, timeout=5))
        await failing(
            agents.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent()), metadata=bearer, timeout=5
            )
        )
        wrong = (("authorization", f"Bearer {key}wrong"),)
        await failing(agents.GetAgent(get, metadata=wrong, timeout=5))
        # a stream relayed to its end, and one abandoned (the run is cancelled upstream)
        run = agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="six times seven")
        assert [e async for e in agents.StreamAgentRun(run, metadata=bearer, timeout=10)]
        abandoned = agents.StreamAgentRun(run, metadata=bearer, timeout=10)
        await abandoned.read()
        abandoned.cancel()
        # a webhook pointing at the gateway, a watch that it ends, a forged delivery
        await webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhook(
            webhook_pb2.CreateWebhookRequest(
                webhook=webhook_pb2.Webhook(
                    url=hook_url, events=["execution.completed"], secret=webhook_secret
                )
            ),
            metadata=bearer,
            timeout=5,
        )
        execution_id = await _execution(channel, bearer)
        watch = execution_pb2_grpc.ExecutionServiceStub(channel).WatchExecution(
            execution_pb2.WatchExecutionRequest(execution_id=execution_id),
            metadata=bearer,
            timeout=10,
        )
        assert [s async for s in watch][-1].status == execution_pb2.EXECUTION_STATUS_COMPLETED
        assert await _signed_delivery(session, hook_url, f"{webhook_secret}x") == 401
        assert await _signed_delivery(session, hook_url, webhook_secret) == 200
        for _ in range(100):  # the emulator's own delivery, and the relay's cancellation
            if admin.webhooks_accepted >= 2 and not running.gateway.relay._cancellations:
                break
            await asyncio.sleep(0.02)
        assert admin.webhooks_accepted >= 2
        async with session.get(f"http://127.0.0.1:{admin.port}/metrics") as response:
            metrics = await response.text()
        assert running.gateway.telemetry.force_flush()
    assert len(failures) == 3
    spans = exporter.get_finished_spans()
    assert len(spans) > 20

    written = [
        *(span.to_json() for span in spans),
        *capture.texts,
        metrics,
        *(text for failure in failures for text in _failure_texts(failure)),
    ]
    assert any("gateway.access" in text for text in capture.texts)
    leaks = [text for text in written if canary in text]
    assert leaks == []


@pytest.mark.asyncio
async def test_credentials_echoed_by_the_upstream_are_redacted(capture: Capture) -> None:
    """An upstream that repeats the credential in its errors: the caller never sees it."""
    canary = f"CANARY{secrets.token_hex(6)}"
    key = f"ggt_{canary}"

    async def echo(request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "")
        kind = request.match_info["agent_id"]
        if kind == "unauthorized":
            return web.json_response(
                {"detail": f"key {sent} is revoked", "code": "bad"}, status=401
            )
        if kind == "invalid":
            detail = [{"loc": ["body", "name"], "msg": f"no, {sent}", "type": "x"}]
            return web.json_response({"detail": detail}, status=422)
        if kind == "limited":
            body = {"detail": f"quota of api_key={key[4:]} spent"}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        return web.Response(text=f"<html>{sent}</html>", status=500, content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/agents/{agent_id}", echo)
    exporter = InMemorySpanExporter()
    failures: list[grpc.aio.AioRpcError] = []
    async with (
        serving_app(app) as url,
        serving_gateway(url, telemetry=TelemetryConfig(span_exporter=exporter)) as running,
    ):
        agents = agent_pb2_grpc.AgentServiceStub(running.channel)
        for kind in ("unauthorized", "invalid", "limited", "broken"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await agents.GetAgent(
                    agent_pb2.GetAgentRequest(agent_id=kind),
                    metadata=(("authorization", f"Bearer {key}"),),
                    timeout=5,
                )
            failures.append(caught.value)
        assert running.gateway.telemetry.force_flush()
    codes = [f.code() for f in failures]
    assert codes == [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    ]
    assert failures[0].details() == "key Bearer [REDACTED] is revoked"
    assert details_of(failures[1])["BadRequest"].field_violations[0].description == (
        "no, Bearer [REDACTED]"
    )
    assert "RetryInfo" in details_of(failures[2])
    written = [
        *(span.to_json() for span in exporter.get_finished_spans()),
        *capture.texts,
        *(text for failure in failures for text in _failure_texts(failure)),
    ]
    assert [text for text in written if canary in text] == []


# --------------------------------------------------------------------------- collectors


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP receiver, over gRPC and over HTTP, keeping what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def http(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of everything received."""
        found: list[tuple[str, str]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope in resource_spans.scope_spans:
                    found.extend((attributes["service.name"], s.name) for s in scope.spans)
        return found


@contextlib.asynccontextmanager
async def collector(protocol: str) -> AsyncIterator[tuple[str, Collector]]:
    receiver = Collector()
    if protocol == "grpc":
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            receiver, server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield f"http://127.0.0.1:{port}", receiver
        finally:
            await server.stop(None)
        return
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.http)
    async with serving_app(app) as url:
        yield url, receiver


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_reach_an_otlp_collector_configured_by_otel_variables(protocol: str) -> None:
    async with collector(protocol) as (endpoint, receiver):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "1",
        }
        telemetry = load_config(env).telemetry
        async with (
            running_emulator(EmulatorConfig(open_mode=True)) as emulator,
            serving_gateway(emulator.url, telemetry=telemetry) as running,
        ):
            agents = agent_pb2_grpc.AgentServiceStub(running.channel)
            await agents.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="x")), timeout=5
            )
        # stopping the gateway flushed its spans, after its pools were closed
    assert sorted(receiver.spans()) == [
        ("gateway-under-test", "POST /v1/agents"),
        ("gateway-under-test", "gagiteck.v1.AgentService/CreateAgent"),
    ]
