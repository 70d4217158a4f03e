"""Property-based fuzzing through the real gateway: what both test modules share.

The examples of a module run one at a time on one long-lived event loop
(:class:`LoopRunner`), against one gateway and its upstreams, all on loopback; each example
is a sync hypothesis test body that runs one coroutine to its end on that loop.

* :class:`RecordingProxy` sits between the gateway and an upstream: it parses every request
  the gateway sends (httptools) and records its method, target and raw headers, or that it
  could not be parsed at all.
* :class:`LogCapture` keeps the log records that carry a traceback, or are errors, from
  anything but the upstreams' own code.
* :func:`call_raw` makes one call through a generic stub, bytes in and bytes out, and
  returns an :class:`Outcome`.
* :func:`violations` checks an outcome against the properties: never UNKNOWN, never a
  traceback or an error in the gateway's log, a ``google.rpc.Status`` with an ErrorInfo
  for every failure (never INTERNAL_GATEWAY_ERROR), every OK answer parseable as the
  declared response, every upstream request on one of the RPC's templates and free of
  CR/LF/NUL in its headers.

The budget: ``GATEWAY_FUZZ_EXAMPLES`` examples per property (by default each property's own,
sized so that CI runs both modules in well under a minute: :func:`fuzz_settings`),
derandomized unless ``GATEWAY_FUZZ_DERANDOMIZE=0``; with
``GATEWAY_FUZZ_SUMMARY`` set to a file, each module appends its figures there, and
:func:`print_summary` prints them (``make fuzz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import grpc
import httptools
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, Phase, settings

from gateway.transcoding.routes import Route

T = TypeVar("T")

EXAMPLES: Final = os.environ.get("GATEWAY_FUZZ_EXAMPLES", "")
DERANDOMIZE: Final = os.environ.get("GATEWAY_FUZZ_DERANDOMIZE", "1") != "0"
SUMMARY: Final = os.environ.get("GATEWAY_FUZZ_SUMMARY", "")
VERBOSE: Final = os.environ.get("GATEWAY_FUZZ_VERBOSE", "") not in ("", "0")


def fuzz_settings(ci_examples: int) -> settings:
    """A property's settings: ``ci_examples`` examples unless ``GATEWAY_FUZZ_EXAMPLES`` says
    otherwise, no per-example deadline (an example may wait out a Retry-After), no example
    database and no explain phase (it replays a failure hundreds of times through a gateway).
    """
    return settings(
        max_examples=int(EXAMPLES) if EXAMPLES else ci_examples,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


UPSTREAM_LOGGERS: Final = ("aiohttp.", "gateway.emulator")
"""Loggers of the upstreams' own code (the emulator, aiohttp's server): what they log is
about the upstream, not about the gateway."""


# --------------------------------------------------------------------------- the loop


class LoopRunner:
    """One event loop that a module's examples share, driven from sync test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        loop = self.loop
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --------------------------------------------------------------------------- the proxy


@dataclass(frozen=True)
class Recorded:
    """One request the upstream received, as the bytes said (or why they said nothing)."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    problem: str = ""
    """Why the bytes are not a valid HTTP/1.1 request ('' when they are)."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode("latin-1").lower() == name:
                return value.decode("latin-1")
        return None


class _RequestParser:
    """httptools callbacks: one :class:`Recorded` per complete request."""

    def __init__(self, sink: Callable[[Recorded], None]) -> None:
        self.sink = sink
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head = b""
        """The start of the bytes of the request being read (its request line)."""
        self.broken = False

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        self.sink(Recorded(method, self.url.decode("latin-1"), tuple(self.headers)))
        self.head = b""

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        if len(self.head) < 2048:
            self.head += data[:2048]
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.broken = True
            line = self.head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.rsplit(" ", 1)[0]
            self.sink(Recorded(method, target, tuple(self.headers), repr(exc)))


class RecordingProxy:
    """A TCP proxy on 127.0.0.1:0 in front of ``target`` that records every request."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.requests: list[Recorded] = []
        self.last_activity = time.monotonic()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def take(self) -> list[Recorded]:
        taken, self.requests = self.requests, []
        return taken

    def _record(self, request: Recorded) -> None:
        self.requests.append(request)

    async def quiet(self, idle: float = 0.03, longest: float = 0.5) -> None:
        """Return once nothing has moved through the proxy for ``idle`` seconds."""
        until = time.monotonic() + longest
        while time.monotonic() < until:
            waited = time.monotonic() - self.last_activity
            if waited >= idle:
                return
            await asyncio.sleep(idle - waited)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
            self._writers.add(upstream_w)
            parser = _RequestParser(self._record)
            to_upstream = asyncio.ensure_future(self._pump(client_r, upstream_w, parser))
            to_client = asyncio.ensure_future(self._pump(upstream_r, client_w, None))
            await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
            if to_client.done():  # the upstream closed: so does the connection to the gateway
                to_upstream.cancel()
            else:
                await asyncio.wait({to_client}, timeout=5)
                to_client.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: _RequestParser | None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                self.last_activity = time.monotonic()
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass


# --------------------------------------------------------------------------- the log


class LogCapture(logging.Handler):
    """Records with a traceback, and errors, from the gateway (or grpc, or asyncio)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.upstream: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not (record.exc_info or record.levelno >= logging.ERROR):
            return
        if record.name.startswith(UPSTREAM_LOGGERS):
            self.upstream.append(record)
        else:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken

    @contextlib.contextmanager
    def installed(self) -> Any:
        root = logging.getLogger()
        level = root.level
        root.addHandler(self)
        root.setLevel(min(level, logging.WARNING))
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(level)


def describe(record: logging.LogRecord) -> str:
    text = f"{record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


# --------------------------------------------------------------------------- one call


@dataclass
class Outcome:
    """What one call did, as its client and the upstream saw it."""

    full_method: str
    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, str | bytes], ...]
    responses: list[bytes]
    elapsed: float
    timeout: float
    requests: list[Recorded] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)

    def status(self) -> status_pb2.Status | None:
        for key, value in self.trailers:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
        return None

    def label(self) -> str:
        """The code, and the ErrorInfo reason of a failure: ``NOT_FOUND/NOT_FOUND``."""
        status = self.status()
        infos = [error_info(d) for d in status.details] if status is not None else []
        reasons = [i.reason for i in infos if i is not None]
        return "/".join([self.code.name, *reasons[:1]])

    def summary(self) -> str:
        lines = [
            f"{self.full_method} → {self.code.name} {self.details[:300]!r} "
            f"after {self.elapsed:.3f}s ({len(self.responses)} messages)"
        ]
        lines += [f"  upstream got {r.method} {r.target[:200]}" for r in self.requests]
        return "\n".join(lines)


async def call_raw(
    channel: grpc.aio.Channel,
    full_method: str,
    request: bytes,
    *,
    streaming: bool,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 5.0,
) -> Outcome:
    """One call with ``request`` as its bytes; the answers as bytes."""
    responses: list[bytes] = []
    started = time.monotonic()
    code, details = grpc.StatusCode.OK, ""
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    identity: Callable[[bytes], bytes] = _identity
    try:
        if streaming:
            stream = channel.unary_stream(
                full_method, request_serializer=identity, response_deserializer=identity
            )
            call = stream(request, metadata=tuple(metadata), timeout=timeout)
            async for message in call:
                responses.append(message)
            trailers = tuple(await call.trailing_metadata() or ())
        else:
            unary = channel.unary_unary(
                full_method, request_serializer=identity, response_deserializer=identity
            )
            unary_call = unary(request, metadata=tuple(metadata), timeout=timeout)
            responses.append(await unary_call)
            trailers = tuple(await unary_call.trailing_metadata() or ())
    except grpc.aio.AioRpcError as error:
        code, details = error.code(), error.details() or ""
        trailers = tuple(error.trailing_metadata() or ())
    return Outcome(
        full_method, code, details, trailers, responses, time.monotonic() - started, timeout
    )


def _identity(data: bytes) -> bytes:
    return data


# --------------------------------------------------------------------------- the properties

_VARIABLE: Final = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+"
"""One path segment as RFC 3986 allows it (pchar), percent-encoded where it must be."""
_QUERY: Final = r"(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
_BAD_HEADER: Final = re.compile(rb"[\r\n\x00]")
_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True)
class Template:
    """An HTTP method and path template an RPC may send upstream."""

    method: str
    template: str
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, method: str, template: str) -> Template:
        path, verb = template, ""
        last = template.rsplit("/", 1)[-1]
        if ":" in last and not last.endswith("}"):
            path, verb = template.rsplit(":", 1)
        parts = []
        for segment in path.strip("/").split("/"):
            is_variable = segment.startswith("{") and segment.endswith("}")
            parts.append(_VARIABLE if is_variable else re.escape(segment))
        regex = "/" + "/".join(parts) + (re.escape(":" + verb) if verb else "") + _QUERY
        return cls(method, template, re.compile(regex))

    def matches(self, request: Recorded) -> bool:
        if request.method != self.method or self.pattern.fullmatch(request.target) is None:
            return False
        segments = request.target.split("?", 1)[0].split("/")
        return all(unquote(s) not in (".", "..") for s in segments[1:])


def templates_of(route: Route) -> list[Template]:
    """What a call of ``route`` may send: its own rule; the GET of the same path before a
    masked update that reads the object first; the cancel POST of an SSE rule."""
    allowed = [Template.of(route.http_method, route.template)]
    if route.update is not None:
        allowed.append(Template.of("GET", route.template))
    if route.sse is not None and route.sse.cancel_path:
        allowed.append(Template.of("POST", "/" + "/".join(route.sse.cancel_path)))
    return allowed


def request_problems(request: Recorded, allowed: Iterable[Template]) -> list[str]:
    problems = []
    if request.problem:
        problems.append(f"the upstream got bytes that are no HTTP request: {request.problem}")
    allowed = list(allowed)
    if not any(t.matches(request) for t in allowed):
        names = ", ".join(f"{t.method} {t.template}" for t in allowed)
        problems.append(
            f"upstream request {request.method} {request.target[:300]!r} is outside the "
            f"route's templates ({names})"
        )
    for name, value in request.headers:
        if _BAD_HEADER.search(value) or not _TOKEN.match(name):
            problems.append(f"upstream header {name!r}: {value[:200]!r} holds CR, LF or NUL")
    return problems


def status_problems(outcome: Outcome) -> list[str]:
    code = outcome.code
    if code is grpc.StatusCode.OK:
        return []
    problems = []
    if code is grpc.StatusCode.UNKNOWN:
        problems.append(f"UNKNOWN status: {outcome.details[:300]!r}")
    status = outcome.status()
    if status is None:
        own_deadline = (
            code is grpc.StatusCode.DEADLINE_EXCEEDED and outcome.elapsed >= outcome.timeout * 0.95
        )
        if not own_deadline:  # the client's own deadline carries nothing (and may not)
            problems.append(f"{code.name} without grpc-status-details-bin: {outcome.details!r}")
        return problems
    if status.code != code.value[0]:
        problems.append(f"google.rpc.Status code {status.code} differs from {code.name}")
    infos = [error_info(d) for d in status.details]
    found = [i for i in infos if i is not None]
    if len(found) != 1:
        problems.append(f"{code.name} with {len(found)} ErrorInfo details (one expected)")
    for info in found:
        if info.reason == "INTERNAL_GATEWAY_ERROR":
            problems.append(f"{code.name} INTERNAL_GATEWAY_ERROR: a bug ({outcome.details!r})")
    return problems


def error_info(packed: Any) -> error_details_pb2.ErrorInfo | None:
    if not packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        return None
    info = error_details_pb2.ErrorInfo()
    packed.Unpack(info)
    return info


def response_problems(outcome: Outcome, response: type[Message], streaming: bool) -> list[str]:
    problems = []
    if not streaming and outcome.code is grpc.StatusCode.OK and len(outcome.responses) != 1:
        problems.append(f"OK with {len(outcome.responses)} messages")
    for i, data in enumerate(outcome.responses):
        try:
            response.FromString(data)
        except Exception as exc:
            problems.append(
                f"message {i} ({len(data)} bytes) does not parse as "
                f"{response.DESCRIPTOR.full_name}: {type(exc).__name__}: {exc}"
            )
    return problems


KNOWN: Final = "known defect"
"""The start of a problem that a known, pinned defect explains (see :data:`KNOWN_DEFECTS`)."""


KNOWN_DEFECTS: Final[dict[str, Callable[[Outcome, str], bool]]] = {}
"""Problems that known defects explain, each pinned by a strict xfail test in the module
that found it; the properties count them apart instead of failing. Fixing a defect turns
its xfail into a failing XPASS: remove its entry here with the mark. (Empty: the four the
first runs found — an out-of-range Timestamp, deep JSON where a string is expected, an
answer larger than a message, an unencoded cancel path — are fixed, and their tests pass.)"""

KNOWN_REQUEST_DEFECTS: Final[dict[str, Callable[[Recorded], bool]]] = {}
"""The same, for upstream requests."""


def violations(outcome: Outcome, route: Route, extra: Sequence[str] = ()) -> list[str]:
    """Every property the outcome breaks, with the ``extra`` problems a module found
    ([] when none); those a known defect explains start with :data:`KNOWN`."""
    problems = [f"logged: {describe(r)}" for r in outcome.logs]
    problems += extra
    problems += status_problems(outcome)
    problems += response_problems(outcome, route.response_codec.cls, route.server_streaming)
    problems = [_marked(outcome, p) for p in problems]
    allowed = templates_of(route)
    for request in outcome.requests:
        found = request_problems(request, allowed)
        known = [name for name, explains in KNOWN_REQUEST_DEFECTS.items() if explains(request)]
        if found and known:
            found = [f"{KNOWN} {known[0]}: {p}" for p in found]
        problems += found
    return problems


def stray_problems(requests: Iterable[Recorded], routes: Iterable[Route]) -> list[str]:
    """Problems of upstream requests no example can be told to own (a poll that outlived its
    call by a few milliseconds): each must still be on some route's template."""
    allowed = [t for route in routes for t in templates_of(route)]
    problems = []
    for request in requests:
        found = request_problems(request, allowed)
        known = [name for name, explains in KNOWN_REQUEST_DEFECTS.items() if explains(request)]
        problems += [f"{KNOWN} {known[0]}: {p}" if known else p for p in found]
    return problems


def _marked(outcome: Outcome, problem: str) -> str:
    for name, explains in KNOWN_DEFECTS.items():
        if explains(outcome, problem):
            return f"{KNOWN} {name}: {problem}"
    return problem


def judge(
    tally: Tally, prop: str, outcome: Outcome, problems: Sequence[str], known_ok: bool = True
) -> None:
    """Count the example; fail it on any problem no known defect explains (``known_ok``
    False: on any problem, for the tests that pin a defect)."""
    tally.count(prop, outcome, problems)
    if VERBOSE:
        print(outcome.summary())
    new = [p for p in problems if not (known_ok and p.startswith(KNOWN))]
    assert not new, outcome.summary() + "\n" + "\n".join(problems)


# --------------------------------------------------------------------------- figures


@dataclass
class Tally:
    """Examples run and broken, per property, for ``make fuzz``'s summary."""

    module: str
    examples: Counter[str] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, Counter[str]] = field(default_factory=dict)
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    upstream_logged: Counter[str] = field(default_factory=Counter)
    """What the upstreams' own code logged (not the gateway's; shown for diagnosis)."""

    def count(self, prop: str, outcome: Outcome | None, problems: Sequence[str]) -> None:
        self.examples[prop] += 1
        if outcome is not None:
            self.codes.setdefault(prop, Counter())[outcome.label()] += 1
        if any(not p.startswith(KNOWN) for p in problems):
            self.broken[prop] += 1
        elif problems:
            self.known[prop] += 1
        kinds = self.kinds.setdefault(prop, Counter())
        for kind in dict.fromkeys(_kind(problem) for problem in problems):
            kinds[kind] += 1

    def upstream(self, records: Iterable[logging.LogRecord]) -> None:
        for record in records:
            self.upstream_logged[_kind(describe(record))] += 1

    def write(self) -> None:
        if not SUMMARY:
            return
        path = Path(SUMMARY)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            for prop in sorted(self.examples):
                entry = {
                    "property": f"{self.module}::{prop}",
                    "examples": self.examples[prop],
                    "broken": self.broken[prop],
                    "known": self.known[prop],
                    "kinds": dict(self.kinds.get(prop, {})),
                    "codes": dict(self.codes.get(prop, {})),
                    "upstream_logged": dict(self.upstream_logged),
                }
                out.write(json.dumps(entry) + "\n")


def _kind(problem: str) -> str:
    """A problem's first words, without the values that make each one unique."""
    if problem.startswith(KNOWN):
        return problem.split(":", 1)[0]
    head = problem.split("\n", 1)[0]
    head = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\d+", "...", head)
    return head[:160]


def print_summary(path: str) -> None:
    """The figures ``make fuzz`` prints: per property the examples run, those that broke a
    property (a new defect), those a known defect explained, the outcomes, what broke."""
    file = Path(path)
    if not file.exists():
        print(f"fuzz summary: {path} was not written (did the tests run?)")
        return
    entries = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    width = max((len(e["property"]) for e in entries), default=10)
    print("\nfuzz summary")
    print(f"  {'property':<{width}}  {'examples':>8}  {'broken':>6}  {'known':>6}")
    for entry in entries:
        print(
            f"  {entry['property']:<{width}}  {entry['examples']:>8}  {entry['broken']:>6}"
            f"  {entry['known']:>6}"
        )
        codes = ", ".join(f"{k} {v}" for k, v in sorted(entry["codes"].items()))
        print(f"      outcomes: {codes}")
        for kind, count in sorted(entry["kinds"].items(), key=lambda kv: -kv[1]):
            print(f"      {count:>6} x {kind}")
    logged: Counter[str] = Counter()
    by_module = {e["property"].split("::")[0]: e.get("upstream_logged", {}) for e in entries}
    for counts in by_module.values():
        logged.update(counts)
    total = sum(e["examples"] for e in entries)
    broken = sum(e["broken"] for e in entries)
    known = sum(e["known"] for e in entries)
    print(f"  {'total':<{width}}  {total:>8}  {broken:>6}  {known:>6}")
    if logged:
        print("  logged by the upstreams themselves (emulator, aiohttp), not by the gateway:")
        for kind, count in logged.most_common():
            print(f"      {count:>6} x {kind}")
