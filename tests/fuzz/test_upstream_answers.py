"""Fuzzing the upstream's side: every route of the contract answered by a scripted
``aiohttp.web`` upstream with hypothesis-chosen answers, through the real gateway.

Each example calls one RPC with a well-formed request (so that it reaches the upstream) and
scripts the answers to the requests it causes, in order (retries, the read before an
update, polls of a watch, the cancel of an abandoned stream): statuses from 100 to 599,
Content-Type and Content-Encoding variants (gzip, deflate, truncated, bogus), Retry-After
and X-RateLimit-* values (inf, nan, 1e20, negative, dates), bodies of the right shape,
with wrong types, deeply nested, huge, invalid UTF-8, empty; for the SSE routes event
streams written in pieces, and plain JSON. Once the script is spent the upstream repeats
its last answer (retries, reopened streams and cancels get it), or answers 404 to a watch's
polls (so that the watch ends).

The properties are those of tests/fuzz/__init__.py, and one more: an OK answer only when
some answer of the upstream was a 2xx.

Each example sends a credential of its own, so that the upstream window one example's
429 closes holds no other example's calls; the circuit breaker is set to never open, so
that examples do not depend on the failures of the ones before.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import pytest
from aiohttp import web
from gagiteck.v1 import agent_pb2
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.server.descriptors import contract_services
from gateway.transcoding.routes import Route, RouteTable
from tests.fuzz import (
    LogCapture,
    LoopRunner,
    Outcome,
    RecordingProxy,
    Tally,
    call_raw,
    fuzz_settings,
    judge,
    request_problems,
    stray_problems,
    templates_of,
    violations,
)
from tests.fuzz import strategies as fuzz
from tests.fuzz.strategies import Answer
from tests.support.harness import RunningGateway, serving_app, serving_gateway

CALL_TIMEOUT: Final = 1.0
MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Small, so that answers larger than a message are cheap to make (bodies up to 1 MiB)."""

ROUTES: Final = RouteTable.compile(contract_services())
UNARY: Final = sorted(r.full_method for r in ROUTES if not r.server_streaming)
STREAMING: Final = sorted(r.full_method for r in ROUTES if r.server_streaming)
GONE: Final = Answer(404, (("Content-Type", "application/json"),), b'{"detail": "gone"}')


class Script:
    """The scripted upstream: answers in order, then the fallback."""

    def __init__(self) -> None:
        self.caller = ""
        self.answers: list[Answer] = []
        self.fallback = GONE
        self.served: list[Answer] = []

    def reset(self, caller: str, answers: Sequence[Answer], fallback: Answer) -> None:
        self.caller = caller
        self.answers = list(answers)
        self.fallback = fallback
        self.served = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.headers.get("Authorization") != self.caller:
            answer = GONE  # a poll that outlived the last example's call: not this one's
        else:
            answer = self.answers.pop(0) if self.answers else self.fallback
            self.served.append(answer)
        headers = CIMultiDict(answer.headers)
        bodiless = answer.status < 200 or answer.status in (204, 304)
        if not answer.chunks or bodiless:
            response = web.Response(status=answer.status, body=answer.body, headers=headers)
            if answer.close:
                response.force_close()
            return response
        stream = web.StreamResponse(status=answer.status, headers=headers)
        if answer.close:
            stream.force_close()
        await stream.prepare(request)
        offset = 0
        for size in answer.chunks:
            await stream.write(answer.body[offset : offset + size])
            offset += size
        await stream.write(answer.body[offset:])
        await stream.write_eof()
        return stream


@dataclass
class Env:
    runner: LoopRunner
    logs: LogCapture
    tally: Tally
    script: Script
    proxy: RecordingProxy
    gateway: RunningGateway
    callers: Iterator[int] = field(default_factory=itertools.count)

    def __repr__(self) -> str:
        return "Env(scripted upstream)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints the fixture with every failing example

    def check(
        self,
        prop: str,
        method: str,
        request: bytes,
        answers: Sequence[Answer],
        fallback: Answer,
        known_ok: bool = True,
    ) -> Outcome:
        route = ROUTES[method]
        outcome = self.runner.run(self._call(route, request, answers, fallback))
        problems = violations(outcome, route, self._ok_problems(outcome))
        judge(self.tally, prop, outcome, problems, known_ok)
        return outcome

    async def _call(
        self, route: Route, request: bytes, answers: Sequence[Answer], fallback: Answer
    ) -> Outcome:
        stray = self.proxy.take()
        caller = f"Bearer fuzz-caller-{next(self.callers)}"
        self.script.reset(caller, answers, fallback)
        outcome = await call_raw(
            self.gateway.channel,
            route.full_method,
            request,
            streaming=route.server_streaming,
            metadata=[("authorization", caller)],
            timeout=CALL_TIMEOUT,
        )
        await self.proxy.quiet()
        requests = self.proxy.take()
        outcome.requests = [r for r in requests if r.header("authorization") == caller]
        stray += [r for r in requests if r.header("authorization") != caller]
        outcome.logs = self.logs.take()
        assert not stray_problems(stray, ROUTES), stray_problems(stray, ROUTES)
        return outcome

    def _ok_problems(self, outcome: Outcome) -> list[str]:
        if outcome.code is not grpc.StatusCode.OK:
            return []
        if any(200 <= a.status < 300 for a in self.script.served):
            return []
        statuses = [a.status for a in self.script.served]
        return [f"OK although the upstream answered only {statuses}"]


# --------------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    runner, logs, tally = LoopRunner(), LogCapture(), Tally("test_upstream_answers")
    stack = contextlib.AsyncExitStack()
    with logs.installed():
        try:
            started = runner.run(_start(stack, runner, logs, tally))
            yield started
        finally:
            runner.run(stack.aclose())
            runner.close()
            tally.upstream(logs.upstream)
            tally.write()


async def _start(
    stack: contextlib.AsyncExitStack, runner: LoopRunner, logs: LogCapture, tally: Tally
) -> Env:
    script = Script()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", script.handle)
    url = await stack.enter_async_context(serving_app(app))
    host, port = url.removeprefix("http://").rsplit(":", 1)
    proxy = RecordingProxy(host, int(port))
    await proxy.start()
    stack.push_async_callback(proxy.close)
    gateway = await stack.enter_async_context(
        serving_gateway(
            proxy.url,
            retry_max_attempts=3,
            retry_base=0.001,
            retry_cap=0.005,
            breaker_failures=1_000_000_000,
            max_message_bytes=MAX_MESSAGE_BYTES,
            upstream_timeout=CALL_TIMEOUT,
            stream_idle_timeout=0.5,
            watch_min_interval=0.005,
            watch_max_interval=0.01,
        )
    )
    return Env(runner, logs, tally, script, proxy, gateway)


# --------------------------------------------------------------------------- the properties


def _request(method: str) -> st.SearchStrategy[bytes]:
    """A well-formed request, its path variables set: one that reaches the upstream."""
    route = ROUTES[method]
    messages = fuzz.request_messages(
        route.request_codec.descriptor, hostile=False, required=route.bound_fields
    )
    return messages.map(lambda m: m.SerializeToString())


def _unary_answers(method: str) -> st.SearchStrategy[list[Answer]]:
    route = ROUTES[method]
    return st.lists(fuzz.answers(fuzz.route_json(route)), min_size=1, max_size=3)


def _stream_answers(method: str) -> st.SearchStrategy[list[Answer]]:
    route = ROUTES[method]
    if route.sse is not None:
        spec = route.sse
        member = spec.members.get(spec.json_event)
        plain = (
            fuzz.route_json(route) if member is None else fuzz.answer_json(member.codec.descriptor)
        )
        one = st.one_of(
            fuzz.stream_answers(spec),
            fuzz.stream_answers(spec),
            fuzz.answers(plain),
        )
        return st.lists(one, min_size=1, max_size=3)
    assert route.watch is not None
    terminal = st.sampled_from(sorted(route.watch.terminal_values))
    shaped = fuzz.route_json(route, {route.watch.terminal_field: terminal})
    return st.lists(fuzz.answers(shaped), min_size=1, max_size=4)


@fuzz_settings(120)
@given(data=st.data())
def test_unary_routes_survive_any_answer(env: Env, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(UNARY), label="method")
    request = data.draw(_request(method), label="request")
    answers = data.draw(_unary_answers(method), label="answers")
    env.check("unary_answers", method, request, answers, answers[-1])


@fuzz_settings(70)
@given(data=st.data())
def test_streaming_routes_survive_any_answer(env: Env, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(STREAMING), label="method")
    request = data.draw(_request(method), label="request")
    answers = data.draw(_stream_answers(method), label="answers")
    fallback = GONE if ROUTES[method].watch is not None else answers[-1]
    env.check("streaming_answers", method, request, answers, fallback)


# --------------------------------------------------------------------------- defects found


def test_cancel_path_from_event_ids_is_percent_encoded(env: Env) -> None:
    route = ROUTES["/gagiteck.v1.AgentService/StreamAgentRun"]
    started = 'event: run.started\ndata: {"run_id": "é"}\n\n'.encode()
    answers = [Answer(200, (("Content-Type", "text/event-stream"),), started)]
    request = agent_pb2.StreamAgentRunRequest(agent_id="a", message="hi").SerializeToString()
    outcome = env.runner.run(env._call(route, request, answers, GONE))
    cancels = [r for r in outcome.requests if r.target.split("?")[0].endswith("/cancel")]
    assert cancels, outcome.summary()
    assert [p for r in cancels for p in request_problems(r, templates_of(route))] == []


_JSON: Final = (("Content-Type", "application/json"),)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 256 + b"]" * 256, id="bare-list-into-the-repeated-field"),
        pytest.param(b'{"name":' + b"[" * 256 + b"]" * 256 + b"}", id="string-field"),
    ],
)
def test_deep_json_where_a_string_is_expected_is_unreadable(env: Env, body: bytes) -> None:
    request = agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="a")).SerializeToString()
    answers = [Answer(200, _JSON, body)]
    method = "/gagiteck.v1.AgentService/CreateAgent"
    env.check("pinned", method, request, answers, answers[-1], known_ok=False)


def test_answer_larger_than_a_message_has_details(env: Env) -> None:
    request = agent_pb2.GetAgentRequest(agent_id="a").SerializeToString()
    body = b'{"name": "' + b"x" * (MAX_MESSAGE_BYTES + 1) + b'"}'
    answers = [Answer(200, _JSON, body)]
    env.check("pinned", "/gagiteck.v1.AgentService/GetAgent", request, answers, answers[-1], False)
