"""Fuzzing the callers' side: every RPC of the contract with generated requests, through the
real gateway, against the emulator in both dialects (on loopback, behind a recording proxy).

Requests come from the descriptors (tests/fuzz/strategies.py): messages with any fields set
to hostile values, metadata with odd values, and bytes that are no message at all. Each
call must end with a status the properties accept (tests/fuzz/__init__.py): never UNKNOWN,
nothing in the gateway's log with a traceback, details on every failure, OK answers that
parse, upstream requests only on the RPC's templates. And a refusal is INVALID_ARGUMENT, or
the status the upstream's HTTP answer maps to.

Before the examples, one pass creates what it can (every POST of the contract, with a plain
message built from its descriptor) so that generated ids include ones the emulator knows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
import pytest
from gagiteck.v1 import access_pb2
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given
from hypothesis import strategies as st

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.server.descriptors import contract_services
from gateway.transcoding.routes import Route, RouteTable
from tests.fuzz import (
    LogCapture,
    LoopRunner,
    Outcome,
    RecordingProxy,
    Tally,
    call_raw,
    error_info,
    fuzz_settings,
    judge,
    stray_problems,
    violations,
)
from tests.fuzz import strategies as fuzz
from tests.support.harness import RunningGateway, serving_gateway

DIALECTS: Final = ("reference", "deployed")
API_KEY: Final = "ggt_fuzz_requests"
CREDENTIALS: Final = (f"Bearer {API_KEY}", f"bearer  {API_KEY} ", "Bearer ggt_unknown", "Basic x")
CALL_TIMEOUT: Final = 3.0

ROUTES: Final = RouteTable.compile(contract_services())
METHODS: Final = sorted(route.full_method for route in ROUTES)


@dataclass
class Upstream:
    proxy: RecordingProxy
    gateway: RunningGateway


@dataclass
class Env:
    runner: LoopRunner
    logs: LogCapture
    tally: Tally
    upstreams: dict[str, Upstream]

    def __repr__(self) -> str:
        return f"Env({', '.join(self.upstreams)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints the fixture with every failing example

    def check(
        self,
        prop: str,
        dialect: str,
        method: str,
        request: bytes,
        metadata: Sequence[tuple[str, str]],
        known_ok: bool = True,
    ) -> Outcome:
        route = ROUTES[method]
        outcome = self.runner.run(self._call(dialect, route, request, metadata))
        problems = violations(outcome, route, _refusal_problems(outcome))
        judge(self.tally, prop, outcome, problems, known_ok)
        return outcome

    async def _call(
        self, dialect: str, route: Route, request: bytes, metadata: Sequence[tuple[str, str]]
    ) -> Outcome:
        upstream = self.upstreams[dialect]
        stray = upstream.proxy.take()  # after the last example's quiet: should be none
        outcome = await call_raw(
            upstream.gateway.channel,
            route.full_method,
            request,
            streaming=route.server_streaming,
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        if outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            await upstream.proxy.quiet(idle=0.1, longest=1.0)  # the server ends the call later
        elif route.server_streaming or outcome.code is not grpc.StatusCode.OK:
            await upstream.proxy.quiet()
        outcome.requests = upstream.proxy.take()
        outcome.logs = self.logs.take()
        assert not stray_problems(stray, ROUTES), stray_problems(stray, ROUTES)
        return outcome


def _refusal_problems(outcome: Outcome) -> list[str]:
    """A failure is INVALID_ARGUMENT, or a status mapped from the upstream's answer."""
    code = outcome.code
    if code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT):
        return []
    status = outcome.status()
    if status is None:  # the client's own deadline (status_problems judges it)
        return []
    for packed in status.details:
        info = error_info(packed)
        if info is None:
            continue
        if "http_status" in info.metadata or info.reason == "UPSTREAM_IGNORED_FIELD":
            return []
        if info.reason == "UPSTREAM_TIMEOUT" and outcome.elapsed >= outcome.timeout * 0.9:
            return []
        return [f"{code.name} ({info.reason}) is neither INVALID_ARGUMENT nor an upstream status"]
    return []


# --------------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    runner, logs, tally = LoopRunner(), LogCapture(), Tally("test_requests")
    stack = contextlib.AsyncExitStack()
    with logs.installed():
        try:
            started = runner.run(_start(stack, runner, logs, tally), timeout=120)
            yield started
        finally:
            fuzz.KNOWN_IDS.clear()
            runner.run(stack.aclose())
            runner.close()
            tally.upstream(logs.upstream)
            tally.write()


async def _start(
    stack: contextlib.AsyncExitStack, runner: LoopRunner, logs: LogCapture, tally: Tally
) -> Env:
    upstreams: dict[str, Upstream] = {}
    for dialect in DIALECTS:
        config = EmulatorConfig(
            dialect=dialect,
            open_mode=True,
            api_keys=(API_KEY,),
            step_delay_seconds=0.005,
            stream_delay_seconds=0,
            outbound_timeout_seconds=0.5,
        )
        emulator = await stack.enter_async_context(running_emulator(config))
        proxy = RecordingProxy(emulator.host, emulator.port)
        await proxy.start()
        stack.push_async_callback(proxy.close)
        gateway = await stack.enter_async_context(serving_gateway(proxy.url))
        upstreams[dialect] = Upstream(proxy, gateway)
    ids: set[str] = set()
    for upstream in upstreams.values():
        ids |= await _create_what_we_can(upstream)
        upstream.proxy.take()
    logs.take()
    fuzz.KNOWN_IDS[:] = sorted(ids)
    return Env(runner, logs, tally, upstreams)


async def _create_what_we_can(upstream: Upstream) -> set[str]:
    """Every POST of the contract with a plain message, twice: first those without path
    variables, then those with, trying the ids the first pass found. The ids answered."""
    ids: set[str] = set()
    posts = [r for r in ROUTES if r.http_method == "POST" and not r.server_streaming]
    for with_variables in (False, True):
        for route in posts:
            if ("{" in route.template) != with_variables:
                continue
            for candidate in sorted(ids)[:12] if with_variables else [""]:
                message = plain_message(route.request_codec.descriptor, candidate)
                outcome = await call_raw(
                    upstream.gateway.channel,
                    route.full_method,
                    message.SerializeToString(),
                    streaming=False,
                    metadata=[("authorization", CREDENTIALS[0])],
                )
                if outcome.code is grpc.StatusCode.OK:
                    ids |= _ids_in(route.response_codec.cls.FromString(outcome.responses[0]))
                    break
    return ids


def plain_message(descriptor: Descriptor, an_id: str, depth: int = 0) -> Message:
    """A message with every singular scalar set to a plain value (ids to ``an_id``)."""
    message = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if field.is_repeated or field.containing_oneof is not None:
            continue
        if field.message_type is not None:
            inner = field.message_type
            if depth < 2 and not inner.full_name.startswith("google.protobuf."):
                getattr(message, field.name).CopyFrom(plain_message(inner, an_id, depth + 1))
            continue
        setattr(message, field.name, _plain_value(field, an_id))
    return message


def _plain_value(field: FieldDescriptor, an_id: str) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.name == "id" or field.name.endswith("_id"):
            return an_id or "fuzz"
        if "email" in field.name:
            return "fuzz@example.com"
        if "url" in field.name:
            return "http://127.0.0.1:9/hook"
        return "fuzz-value"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"fuzz"
    if field.enum_type is not None:
        numbers = [v.number for v in field.enum_type.values]
        return numbers[1] if len(numbers) > 1 else numbers[0]
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.5
    return 1


def _ids_in(message: Message) -> set[str]:
    found: set[str] = set()
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for item in values:
            if isinstance(item, Message):
                found |= _ids_in(item)
            elif (
                isinstance(item, str)
                and item
                and (field.name == "id" or field.name.endswith("_id"))
            ):
                found.add(item)
    return found


# --------------------------------------------------------------------------- the properties

_methods = st.sampled_from(METHODS)


@fuzz_settings(250)
@given(data=st.data())
def test_generated_requests_end_in_accepted_statuses(env: Env, data: st.DataObject) -> None:
    dialect = data.draw(st.sampled_from(DIALECTS), label="dialect")
    method = data.draw(_methods, label="method")
    descriptor = ROUTES[method].request_codec.descriptor
    message = data.draw(fuzz.request_messages(descriptor), label="request")
    metadata = data.draw(fuzz.call_metadata(CREDENTIALS), label="metadata")
    env.check("request_messages", dialect, method, message.SerializeToString(), metadata)


@fuzz_settings(250)
@given(data=st.data())
def test_request_bytes_end_in_accepted_statuses(env: Env, data: st.DataObject) -> None:
    dialect = data.draw(st.sampled_from(DIALECTS), label="dialect")
    method = data.draw(_methods, label="method")
    raw = data.draw(fuzz.request_bytes(ROUTES[method].request_codec.descriptor), label="bytes")
    env.check("request_bytes", dialect, method, raw, [("authorization", CREDENTIALS[0])])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_answers_garbage_with_invalid_argument(env: Env, method: str) -> None:
    outcome = env.check("garbage", "reference", method, b"\xff\xff\xff\xff", [])
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT
    assert not outcome.requests


# --------------------------------------------------------------------------- defects found


def _role_stamped(seconds: int) -> bytes:
    role = access_pb2.Role(id="0", updated_at=timestamp_pb2.Timestamp(seconds=seconds))
    return access_pb2.CreateRoleRequest(role=role).SerializeToString()


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(-62_135_596_801, id="before-year-1"),
        pytest.param(253_402_300_800, id="after-year-9999"),
        pytest.param(2**62, id="overflow"),
    ],
)
def test_timestamp_out_of_range_in_a_body_is_refused_cleanly(env: Env, seconds: int) -> None:
    method = "/gagiteck.v1.AccessService/CreateRole"
    env.check("pinned", "reference", method, _role_stamped(seconds), [], known_ok=False)
