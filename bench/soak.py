"""Soak and fault run: mixed load through the real gateway for 15-30 minutes, with faults.

    .venv/bin/python bench/soak.py [--minutes 15] [--seed 1] [--fault-rate 0.01]   (make soak)

Everything runs on 127.0.0.1, each part a process of its own except the proxy and the load:

    load (this process) ─gRPC─▶ gateway ─HTTP/1.1─▶ fault proxy (this process) ─▶ emulator
                                   └─ redis-server (shared rate-limit buckets)

- **redis-server** (Debian package; nothing on disk), killed with SIGKILL at 40% of the run
  and started again on the same port ``REDIS_DOWN`` seconds later (a tenth of the run at most);
- **the emulator** as ``python -m gateway emulator`` (open mode, the soak's API keys); its
  own fault knob answers 5xx (500, 502, 503, 504 in turn, a minute each) for a fifth of the
  fault rate;
- **the fault proxy** (bench/lib/faults.py) for the other four fifths: connection resets
  before forwarding and halfway through an answer, stalls held until the caller's deadline,
  answers dripped a byte at a time;
- **the gateway** as deployed: ``python -m gateway serve``, tracing on (OTLP exporter aimed
  at a closed port, half the traces sampled), global and per-caller rate limits in Redis,
  access log on (JSON lines on stderr, kept in the run's directory).
- **the load**: Poisson arrivals (``--rate`` a second) of unary calls of eleven RPCs,
  StreamAgentRun streams (one in ten cancelled by the caller after three events) and
  TriggerWorkflow + WatchExecution, from four callers (API keys), plus, every minute, a
  burst of 60 GetAgent calls from the busiest caller to hit its rate limit.

Every 10 s: the gateway's RSS and open descriptors (/proc; descriptors also by kind),
threads, asyncio tasks and event-loop lag, the /metrics gauges of calls, streams, pollers
and connections in use, every process's CPU time and the load average. The gateway exposes
no task count: with the task probe (the default; ``--no-task-probe`` leaves it out) a
sitecustomize.py on the gateway's PYTHONPATH starts one thread that counts
``asyncio.all_tasks()`` and times a ``call_soon_threadsafe`` callback every 0.5 s, and
writes both to tasks.jsonl; ``--count-objects`` adds the gateway's objects by type once a
minute. "Flat after warm-up" compares the first third of the samples after the warm-up (a
fifth of the run) with the last third, leaving out samples taken while other processes
starved the CPUs. After the load, the run waits for everything to drain and compares the
gateway at rest with itself at rest before the load.

At the end, three ledgers are reconciled call by call (each call carries its own
``x-request-id``, which the gateway logs and forwards upstream): the client's tally, the
gateway's access log, and the upstream's (the proxy's record of every request, checked
route by route against the emulator's own counters). A difference no injected fault
explains, a growing series or anything left over at rest fails the run (exit 1). Output:
the report on stdout, and build/soak/<UTC time>/ with the logs, both ledgers, samples.json,
summary.json and report.txt. docs/RELIABILITY.md ("Soak and fault run") has figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from gagiteck.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lib.faults import Exchange, FaultPlan, FaultProxy
from lib.procstat import cpu_seconds
from lib.systems import free_port
from lib.tooling import PYTHON, ROOT

SAMPLE_EVERY = 10.0
UNARY_DEADLINE = 5.0
STREAM_DEADLINE = 20.0
WATCH_DEADLINE = 30.0
BURST_DEADLINE = 1.0
BURST_CALLS = 60
BURST_EVERY = 60.0
REDIS_DOWN = 45.0
ERROR_STATUSES = (503, 500, 502, 504)
ERROR_SHARE = 0.2  # of the fault rate: the emulator's 5xx; the rest is the proxy's
CALLER_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
SETUP_AGENTS = 30
MAX_CREATED = 150
MAX_OUTSTANDING = 3000
DRAIN_WAIT = 120.0
IDLE_BEFORE = 12.0
IDLE_AFTER = 70.0  # the unary pool closes connections idle 30 s at sweeps 30 s apart: all by 60 s
CANCEL_PATH = re.compile(r"/runs/[^/]+/cancel$")
DEADLINE_SLACK_MS = 250
# agents are picked from a pool that deletes run concurrently with, and missing ids on purpose
NOT_FOUND_INTENDED = frozenset(
    {
        "AgentService/GetAgent",
        "AgentService/UpdateAgent",
        "AgentService/RunAgent",
        "AgentService/StreamAgentRun",
    }
)

# scenario → weight (per arrival)
SCENARIOS: dict[str, int] = {
    "get_agent": 24,
    "get_missing_agent": 3,
    "list_agents": 8,
    "create_agent": 8,
    "update_agent": 5,
    "delete_agent": 4,
    "run_agent": 6,
    "list_executions": 4,
    "search": 4,
    "get_workflow": 3,
    "list_workflows": 2,
    "stream_run": 6,
    "watch_execution": 3,
}

GATEWAY_SETTINGS = {
    "GATEWAY_RATE_LIMIT_RPS": "150",
    "GATEWAY_RATE_LIMIT_BURST": "50",
    "GATEWAY_CALLER_RATE_LIMIT_RPS": "30",
    "GATEWAY_CALLER_RATE_LIMIT_BURST": "20",
    "GATEWAY_METHOD_COSTS": "RunAgent=2,StreamAgentRun=2",
    "GATEWAY_UPSTREAM_TIMEOUT": "10",
    "GATEWAY_ACCESS_LOG": "true",
    "GATEWAY_LOG_FORMAT": "json",
    "GATEWAY_LOG_LEVEL": "info",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.5",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
    "OTEL_SERVICE_NAME": "gagiteck-gateway-soak",
}

TASK_PROBE = '''"""Written by bench/soak.py: asyncio tasks and loop lag of this process."""
import json, os, threading, time
from collections import Counter

def _name(task):
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)

def _tasks():
    import asyncio.tasks
    for _ in range(5):
        try:
            return [t for t in list(asyncio.tasks._all_tasks) if not t.done()]
        except RuntimeError:  # the set changed while it was copied
            time.sleep(0.01)
    return []

def _lag(loop):
    """Seconds between asking the loop to run a callback and its running it."""
    ran = threading.Event()
    asked = time.monotonic()
    try:
        loop.call_soon_threadsafe(ran.set)
    except RuntimeError:
        return None
    return time.monotonic() - asked if ran.wait(10) else 10.0

def _objects():
    """Objects the collector tracks, by type (types with at least 20)."""
    import gc
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return {name: n for name, n in counts.items() if n >= 20}

def _probe(path, every):
    count_every = float(os.environ.get("SOAK_COUNT_OBJECTS", "0"))
    counted = 0.0
    with open(path, "a", buffering=1) as out:
        while True:
            lags, until = [], time.monotonic() + every
            while time.monotonic() < until:
                time.sleep(0.5)
                tasks = _tasks()
                lag = _lag(tasks[0].get_loop()) if tasks else None
                if lag is not None:
                    lags.append(lag)
            tasks = _tasks()
            top = Counter(_name(t) for t in tasks).most_common(15)
            entry = {"t": time.time(), "tasks": len(tasks), "top": top,
                     "lag_max_ms": round(max(lags) * 1000, 1) if lags else None}
            if count_every and time.monotonic() - counted >= count_every:
                counted = time.monotonic()
                entry["objects"] = _objects()
            out.write(json.dumps(entry) + "\\n")

if os.environ.get("SOAK_TASK_PROBE"):
    threading.Thread(
        target=_probe,
        args=(os.environ["SOAK_TASK_PROBE"], float(os.environ.get("SOAK_TASK_PROBE_EVERY", "10"))),
        name="soak-task-probe",
        daemon=True,
    ).start()
'''


REPORT: list[str] = []


def say(text: str = "") -> None:
    """A line of the report: on stdout, and kept for report.txt."""
    REPORT.append(text)
    print(text, flush=True)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Soak:
    minutes: float
    seed: int
    fault_rate: float
    rate: float
    task_probe: bool
    count_objects: bool
    out: Path

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @property
    def warmup(self) -> float:
        return 0.2 * self.seconds

    @property
    def redis_kill_at(self) -> float:
        return 0.4 * self.seconds

    @property
    def redis_down(self) -> float:
        return min(REDIS_DOWN, 0.1 * self.seconds)


def parse_args(argv: list[str] | None = None) -> Soak:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "15"))
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument(
        "--fault-rate", type=float, default=float(os.environ.get("SOAK_FAULT_RATE", "0.01"))
    )
    parser.add_argument(
        "--rate", type=float, default=40.0, help="scenario arrivals per second (default 40)"
    )
    parser.add_argument(
        "--no-task-probe", action="store_true", help="run the gateway without the task probe"
    )
    parser.add_argument(
        "--count-objects",
        action="store_true",
        help="the task probe also counts the gateway's objects by type once a minute "
        "(gc.get_objects: a pause of some tens of ms each time; for hunting a leak)",
    )
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Soak(
        minutes=args.minutes,
        seed=args.seed,
        fault_rate=args.fault_rate,
        rate=args.rate,
        task_probe=not args.no_task_probe,
        count_objects=args.count_objects,
        out=ROOT / "build" / "soak" / stamp,
    )


# --------------------------------------------------------------------------- processes


class RedisProcess:
    """redis-server on 127.0.0.1 with nothing on disk; killed and started again on its port."""

    def __init__(self, out: Path) -> None:
        self.port = free_port()
        self.dir = out / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = (out / "redis.log").open("ab")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.dir), "--loglevel", "warning"]
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        raise SystemExit("soak: redis-server did not answer PING")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def command(self, command: str) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(command.encode() + b"\r\n")
                return sock.recv(128).decode().strip()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        self.log.close()


def start_process(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, float]:
    """SIGTERM, wait; the exit code and the seconds it took (SIGKILL after ``timeout``)."""
    started = time.monotonic()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode, time.monotonic() - started


def api_keys(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"ggt_soak{n}{rng.getrandbits(128):032x}" for n in range(len(CALLER_WEIGHTS))]


def start_emulator(soak: Soak, keys: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [str(PYTHON), "-m", "gateway", "emulator", "--listen", f"127.0.0.1:{port}"]
    for key in keys:
        argv += ["--api-key", key]
    return start_process(argv, soak.out / "emulator.log", {}), port


def gateway_env(soak: Soak, ports: dict[str, int], redis_url: str) -> dict[str, str]:
    env = {
        **GATEWAY_SETTINGS,
        "GATEWAY_LISTEN": f"127.0.0.1:{ports['grpc']}",
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{ports['admin']}",
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{ports['proxy']}",
        "GATEWAY_REDIS_URL": redis_url,
        # per-caller buckets in Redis are keyed by a salted digest every replica shares
        "GATEWAY_DIGEST_SALT": f"soak-salt-{soak.seed:016d}",
        # a port nobody listens on: every export fails, the spans are made all the same
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['otlp']}",
    }
    if soak.task_probe:
        probe = soak.out / "probe"
        probe.mkdir(exist_ok=True)
        (probe / "sitecustomize.py").write_text(TASK_PROBE)
        path = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{probe}{os.pathsep}{path}" if path else str(probe)
        env["SOAK_TASK_PROBE"] = str(soak.out / "tasks.jsonl")
        env["SOAK_TASK_PROBE_EVERY"] = str(SAMPLE_EVERY / 2)
        if soak.count_objects:
            env["SOAK_COUNT_OBJECTS"] = "60"
    return env


async def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit(f"soak: {url} did not answer")


async def wait_grpc(target: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and process.poll() is None:
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
    raise SystemExit(f"soak: the gateway at {target} did not come up; see its log")


# --------------------------------------------------------------------------- the load


@dataclass(slots=True)
class Call:
    """One call as the client saw it."""

    rid: str
    rpc: str
    caller: int
    deadline: float
    started: float
    ended: float | None = None
    code: str = ""
    reason: str = ""  # ErrorInfo reason, when the status carried one
    messages: int = 0
    cancelled_by_client: bool = False
    subject: str = ""  # a watch's execution id


def _reason(error: grpc.aio.AioRpcError) -> str:
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


class Load:
    """The callers, their stubs, the data they work on, and every call they made."""

    def __init__(self, target: str, keys: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = keys
        self.channels = [grpc.aio.insecure_channel(target) for _ in keys]
        self.agents_stub: list[Any] = [agent_pb2_grpc.AgentServiceStub(c) for c in self.channels]
        self.executions_stub: list[Any] = [
            execution_pb2_grpc.ExecutionServiceStub(c) for c in self.channels
        ]
        self.workflows_stub: list[Any] = [
            workflow_pb2_grpc.WorkflowServiceStub(c) for c in self.channels
        ]
        self.search_stub: list[Any] = [search_pb2_grpc.SearchServiceStub(c) for c in self.channels]
        self.calls: list[Call] = []
        self.fixed_agents: list[str] = []
        self.created_agents: list[str] = []
        self.workflows: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self._seq = itertools.count(1)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    # ---- one call
    def _begin(self, rpc: str, caller: int, deadline: float) -> Call:
        call = Call(f"soak-{next(self._seq):07d}", rpc, caller, deadline, time.monotonic())
        self.calls.append(call)
        return call

    def _metadata(self, call: Call) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[call.caller]}"), ("x-request-id", call.rid))

    @staticmethod
    def _failed(call: Call, error: BaseException) -> None:
        if isinstance(error, grpc.aio.AioRpcError):
            call.code = error.code().name
            call.reason = _reason(error)
        else:
            call.code = f"CLIENT_{type(error).__name__}"

    async def unary(
        self,
        rpc: str,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        caller: int,
        deadline: float = UNARY_DEADLINE,
    ) -> Any:
        call = self._begin(rpc, caller, deadline)
        try:
            answer = await method(request, metadata=self._metadata(call), timeout=deadline)
        except (grpc.aio.AioRpcError, OSError) as error:
            self._failed(call, error)
            return None
        finally:
            call.ended = time.monotonic()
        call.code = "OK"
        return answer

    async def stream(
        self,
        rpc: str,
        method: Callable[..., Any],
        request: Any,
        caller: int,
        deadline: float,
        stop_after: int | None = None,
        subject: str = "",
    ) -> Any:
        call = self._begin(rpc, caller, deadline)
        call.subject = subject
        last = None
        stream = method(request, metadata=self._metadata(call), timeout=deadline)
        try:
            async for last in stream:
                call.messages += 1
                if stop_after is not None and call.messages >= stop_after:
                    call.cancelled_by_client = True
                    stream.cancel()
                    call.code = "CANCELLED"
                    return last
            call.code = "OK"
        except (grpc.aio.AioRpcError, OSError) as error:
            self._failed(call, error)
        finally:
            call.ended = time.monotonic()
        return last

    # ---- choices
    def caller(self) -> int:
        return self.rng.choices(range(len(CALLER_WEIGHTS)), CALLER_WEIGHTS)[0]

    def agent(self) -> str:
        pool = self.fixed_agents + self.created_agents
        return self.rng.choice(pool)

    def question(self) -> str:
        a, b, c = (self.rng.randint(2, 99) for _ in range(3))
        return f"What is {a} * ({b} + {c})? Find the latest news on soak tests."

    # ---- set-up
    async def setup(self) -> None:
        for n in range(SETUP_AGENTS):
            agent = await self._create(n % len(self.keys), f"soak fixed {n}")
            if agent is not None:
                self.fixed_agents.append(agent)
        for n, delay in enumerate((0.4, 1.0, 2.0)):
            workflow = await self._create_workflow(n % len(self.keys), delay)
            if workflow is not None:
                self.workflows.append(workflow)
        if len(self.fixed_agents) < SETUP_AGENTS // 2 or not self.workflows:
            raise SystemExit("soak: set-up through the gateway failed; see the gateway's log")

    async def _create(self, caller: int, name: str) -> str | None:
        agent = agent_pb2.Agent(
            name=name,
            system_prompt="You are a helpful research assistant.",
            config=agent_pb2.AgentConfig(model="claude-3-sonnet", temperature=0.3),
            tools=["calculator", "web_search"],
        )
        request = agent_pb2.CreateAgentRequest(agent=agent)
        stub = self.agents_stub[caller]
        answer = await self.unary("AgentService/CreateAgent", stub.CreateAgent, request, caller)
        return None if answer is None else str(answer.id)

    async def _create_workflow(self, caller: int, delay: float) -> str | None:
        steps = [
            workflow_pb2.WorkflowStep(
                id="brief",
                type="transform",
                name="Brief",
                config=_struct({"template": "Research: {{input.topic}}"}),
            ),
            workflow_pb2.WorkflowStep(
                id="wait", type="delay", name="Wait", config=_struct({"seconds": delay})
            ),
            workflow_pb2.WorkflowStep(
                id="research",
                type="agent",
                name="Research",
                config=_struct({"agent_id": self.fixed_agents[0], "message": "{{brief.output}}"}),
            ),
        ]
        workflow = workflow_pb2.Workflow(name=f"soak pipeline {delay}s", steps=steps)
        request = workflow_pb2.CreateWorkflowRequest(workflow=workflow)
        stub = self.workflows_stub[caller]
        answer = await self.unary(
            "WorkflowService/CreateWorkflow", stub.CreateWorkflow, request, caller
        )
        return None if answer is None else str(answer.id)

    # ---- scenarios
    def spawn(self, work: Awaitable[None]) -> None:
        if len(self.tasks) >= MAX_OUTSTANDING:
            self.skipped += 1
            if asyncio.iscoroutine(work):
                work.close()
            return
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def scenario(self, name: str) -> None:
        await getattr(self, f"_{name}")(self.caller())

    async def _get_agent(self, caller: int) -> None:
        request = agent_pb2.GetAgentRequest(agent_id=self.agent())
        await self.unary(
            "AgentService/GetAgent", self.agents_stub[caller].GetAgent, request, caller
        )

    async def _get_missing_agent(self, caller: int) -> None:
        request = agent_pb2.GetAgentRequest(agent_id=f"agent_missing{self.rng.randrange(10**6)}")
        await self.unary(
            "AgentService/GetAgent", self.agents_stub[caller].GetAgent, request, caller
        )

    async def _list_agents(self, caller: int) -> None:
        request = agent_pb2.ListAgentsRequest(limit=10, offset=self.rng.randrange(0, 40))
        stub = self.agents_stub[caller]
        await self.unary("AgentService/ListAgents", stub.ListAgents, request, caller)

    async def _create_agent(self, caller: int) -> None:
        if len(self.created_agents) >= MAX_CREATED:
            await self._delete_agent(caller)
            return
        agent = await self._create(caller, f"soak {self.rng.randrange(10**6)}")
        if agent is not None:
            self.created_agents.append(agent)

    async def _update_agent(self, caller: int) -> None:
        agent = agent_pb2.Agent(name=f"renamed {self.rng.randrange(10**6)}")
        request = agent_pb2.UpdateAgentRequest(
            agent_id=self.agent(), agent=agent, update_mask=field_mask_pb2.FieldMask(paths=["name"])
        )
        stub = self.agents_stub[caller]
        await self.unary("AgentService/UpdateAgent", stub.UpdateAgent, request, caller)

    async def _delete_agent(self, caller: int) -> None:
        if not self.created_agents:
            await self._get_agent(caller)
            return
        agent = self.created_agents.pop(self.rng.randrange(len(self.created_agents)))
        request = agent_pb2.DeleteAgentRequest(agent_id=agent)
        stub = self.agents_stub[caller]
        await self.unary("AgentService/DeleteAgent", stub.DeleteAgent, request, caller)

    async def _run_agent(self, caller: int) -> None:
        request = agent_pb2.RunAgentRequest(agent_id=self.agent(), message=self.question())
        stub = self.agents_stub[caller]
        await self.unary("AgentService/RunAgent", stub.RunAgent, request, caller)

    async def _list_executions(self, caller: int) -> None:
        request = execution_pb2.ListExecutionsRequest(limit=5)
        stub = self.executions_stub[caller]
        await self.unary("ExecutionService/ListExecutions", stub.ListExecutions, request, caller)

    async def _search(self, caller: int) -> None:
        query = self.rng.choice(("soak", "research", "pipeline", "renamed", "assistant"))
        request = search_pb2.SearchRequest(q=query, limit=5)
        await self.unary("SearchService/Search", self.search_stub[caller].Search, request, caller)

    async def _get_workflow(self, caller: int) -> None:
        request = workflow_pb2.GetWorkflowRequest(workflow_id=self.rng.choice(self.workflows))
        stub = self.workflows_stub[caller]
        await self.unary("WorkflowService/GetWorkflow", stub.GetWorkflow, request, caller)

    async def _list_workflows(self, caller: int) -> None:
        request = workflow_pb2.ListWorkflowsRequest(limit=10)
        stub = self.workflows_stub[caller]
        await self.unary("WorkflowService/ListWorkflows", stub.ListWorkflows, request, caller)

    async def _stream_run(self, caller: int) -> None:
        request = agent_pb2.StreamAgentRunRequest(agent_id=self.agent(), message=self.question())
        stop_after = 3 if self.rng.random() < 0.1 else None
        stub = self.agents_stub[caller]
        await self.stream(
            "AgentService/StreamAgentRun",
            stub.StreamAgentRun,
            request,
            caller,
            STREAM_DEADLINE,
            stop_after,
        )

    async def _watch_execution(self, caller: int) -> None:
        request = workflow_pb2.TriggerWorkflowRequest(
            workflow_id=self.rng.choice(self.workflows), input=_struct({"topic": "soak"})
        )
        stub = self.workflows_stub[caller]
        execution = await self.unary(
            "WorkflowService/TriggerWorkflow", stub.TriggerWorkflow, request, caller
        )
        if execution is None:
            return
        watch = execution_pb2.WatchExecutionRequest(execution_id=execution.id)
        await self.stream(
            "ExecutionService/WatchExecution",
            self.executions_stub[caller].WatchExecution,
            watch,
            caller,
            WATCH_DEADLINE,
            subject=execution.id,
        )

    async def burst(self) -> None:
        """The busiest caller fires BURST_CALLS GetAgent calls at once, with short deadlines."""
        stub = self.agents_stub[0]
        await asyncio.gather(
            *(
                self.unary(
                    "AgentService/GetAgent",
                    stub.GetAgent,
                    agent_pb2.GetAgentRequest(agent_id=self.agent()),
                    0,
                    BURST_DEADLINE,
                )
                for _ in range(BURST_CALLS)
            )
        )

    async def drive(self, seconds: float, rate: float) -> None:
        """Poisson arrivals of scenarios for ``seconds``, and a burst every BURST_EVERY."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        names, weights = list(SCENARIOS), list(SCENARIOS.values())
        at, next_burst = start, start + BURST_EVERY / 2
        while True:
            at += self.rng.expovariate(rate)
            if at >= start + seconds:
                return
            await asyncio.sleep(max(0.0, at - loop.time()))
            if loop.time() >= next_burst:
                next_burst += BURST_EVERY
                self.spawn(self.burst())
            self.spawn(self.scenario(self.rng.choices(names, weights)[0]))


# --------------------------------------------------------------------------- sampling


def read_proc(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "Threads"):
            values[key] = int(rest.split()[0])
    return {
        "rss_kib": values.get("VmRSS", 0),
        "threads": values.get("Threads", 0),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


TCP_STATES = {"01": "established", "06": "time-wait", "08": "close-wait", "0A": "listening"}


def tcp_sockets() -> dict[str, tuple[int, int, str]]:
    """Socket inode → (local port, remote port, state), from /proc/net/tcp and tcp6."""
    found = {}
    for table_name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table_name}").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
                found[fields[9]] = (local, remote, TCP_STATES.get(fields[3], fields[3]))
    return found


def fd_kinds(pid: int, ports: dict[str, int]) -> dict[str, int]:
    """The process's descriptors by kind; TCP sockets by the named port at either end."""
    names = {port: name for name, port in ports.items()}
    sockets = tcp_sockets()
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
        if inode is None:
            kinds[target.split(":")[0] if ":" in target else "file"] += 1
        elif inode in sockets:
            local, remote, state = sockets[inode]
            if local in names:
                kinds[f"tcp {state} on {names[local]}"] += 1
            else:
                kinds[f"tcp {state} to {names.get(remote, remote)}"] += 1
        else:
            kinds["socket (not tcp)"] += 1
    return dict(sorted(kinds.items()))


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def metric_sum(metrics: dict[str, float], prefix: str, having: str = "") -> float:
    return sum(v for k, v in metrics.items() if k.split("{")[0] == prefix and having in k)


def last_probe(path: Path, after: float = 0.0) -> dict[str, Any] | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry: dict[str, Any] = json.loads(line)
            if entry["t"] >= after:
                return entry
            return None
    return None


@dataclass
class Sampler:
    pid: int
    admin: str
    probe: Path
    load: Load
    proxy: FaultProxy
    started: float
    ports: dict[str, int]
    emulator_pid: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    driver_lag: float = 0.0  # the longest this process's own loop was late since the last sample
    metrics: dict[str, float] = field(default_factory=dict)

    async def sample(self, session: aiohttp.ClientSession, phase: str) -> dict[str, Any]:
        try:
            async with session.get(f"{self.admin}/metrics") as response:
                self.metrics = parse_metrics(await response.text())
        except aiohttp.ClientError:
            self.metrics = {}
        probe = last_probe(self.probe)
        m = self.metrics
        sample = {
            "t": round(time.monotonic() - self.started, 1),
            "phase": phase,
            **read_proc(self.pid),
            "tasks": probe["tasks"] if probe else None,
            "lag_ms": probe.get("lag_max_ms") if probe else None,
            "driver_lag_ms": round(self.driver_lag * 1000, 1),
            "rpcs_in_flight": metric_sum(m, "gateway_rpcs_in_flight"),
            "sse_open": metric_sum(m, "gateway_streams_open", 'kind="sse"'),
            "watch_open": metric_sum(m, "gateway_streams_open", 'kind="watch"'),
            "pollers": metric_sum(m, "gateway_watch_pollers"),
            "unary_conns": metric_sum(m, "gateway_upstream_connections_in_use", "unary"),
            "stream_conns": metric_sum(m, "gateway_upstream_connections_in_use", "stream"),
            "queue": metric_sum(m, "gateway_upstream_queue_depth"),
            "client_outstanding": len(self.load.tasks),
            "proxy_connections": self.proxy.open_connections,
            "fd_kinds": fd_kinds(self.pid, self.ports),
            "cpu_s": round(cpu_seconds(self.pid), 2),
            "emulator_cpu_s": round(cpu_seconds(self.emulator_pid), 2),
            "driver_cpu_s": round(cpu_seconds(os.getpid()), 2),
            "loadavg": os.getloadavg()[0],
        }
        self.samples.append(sample)
        self.driver_lag = 0.0
        return sample

    async def watch_loop(self) -> None:
        """How late this process's loop runs (the load and the proxy share it)."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.1)
            self.driver_lag = max(self.driver_lag, loop.time() - asked - 0.1)

    async def run(self, session: aiohttp.ClientSession, phase: Callable[[], str]) -> None:
        while True:
            await self.sample(session, phase())
            await asyncio.sleep(SAMPLE_EVERY)


# --------------------------------------------------------------------------- chaos


async def rotate_errors(emulator: str, soak: Soak) -> None:
    """The emulator's 5xx knob: ERROR_SHARE of the fault rate, its status changed each minute."""
    async with aiohttp.ClientSession() as session:
        for minute in itertools.count():
            faults = {
                "error_rate": soak.fault_rate * ERROR_SHARE,
                "error_status": ERROR_STATUSES[minute % len(ERROR_STATUSES)],
                "seed": soak.seed * 1000 + minute,
            }
            async with session.post(f"{emulator}/_emulator/faults", json=faults) as response:
                response.raise_for_status()
            await asyncio.sleep(60)


async def errors_off(emulator: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{emulator}/_emulator/faults", json={}) as response,
    ):
        response.raise_for_status()


async def redis_outage(redis: RedisProcess, soak: Soak, events: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    await asyncio.sleep(soak.redis_kill_at)
    redis.kill()
    events.append({"event": "redis killed (SIGKILL)", "t": round(time.monotonic() - started, 1)})
    await asyncio.sleep(soak.redis_down)
    await asyncio.to_thread(redis.start)
    events.append({"event": "redis started again", "t": round(time.monotonic() - started, 1)})
    await asyncio.sleep(min(30.0, soak.redis_down))
    keys = redis.command("DBSIZE")
    events.append(
        {
            "event": f"redis keys {min(30.0, soak.redis_down):.0f}s later: {keys.lstrip(':')}",
            "t": round(time.monotonic() - started, 1),
        }
    )


# --------------------------------------------------------------------------- the ledgers


def read_gateway_log(path: Path) -> tuple[dict[str, list[dict[str, Any]]], Counter[str], int]:
    """Access lines by request id; other lines by level and message; unparsable lines."""
    access: dict[str, list[dict[str, Any]]] = defaultdict(list)
    other: Counter[str] = Counter()
    unparsable = 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            unparsable += bool(line.strip())
            continue
        if entry.get("logger") == "gateway.access":
            access[entry.get("request_id", "")].append(entry)
        else:
            message = re.sub(r"\d+(\.\d+)?", "#", str(entry.get("message", "")))[:110]
            other[f"{entry.get('level')} {entry.get('logger')}: {message}"] += 1
    return access, other, unparsable


def short_method(full: str) -> str:
    return full.removeprefix("gagiteck.v1.")


def route_matchers(labels: Iterable[str]) -> list[tuple[str, str, re.Pattern[str]]]:
    """The emulator's route labels ("GET /v1/agents/{agent_id}") as (method, label, regex)."""
    matchers = []
    for label in labels:
        method, _, template = label.partition(" ")
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        matchers.append((method, label, re.compile(f"^{pattern}$")))
    return matchers


def label_of(exchange: Exchange, matchers: list[tuple[str, str, re.Pattern[str]]]) -> str:
    for method, label, pattern in matchers:
        if method == exchange.method and pattern.match(exchange.path):
            return label
    return f"{exchange.method} {exchange.path} (no emulator route)"


@dataclass
class Finding:
    """A difference between two ledgers, and whether a fault explains it."""

    check: str
    rid: str
    what: str
    explained: str = ""  # empty: unexplained


@dataclass
class Ledgers:
    calls: list[Call]
    access: dict[str, list[dict[str, Any]]]
    exchanges: dict[str, list[Exchange]]  # by request id
    polls: list[Exchange]  # requests whose id no call made (the watch pollers')
    starved: list[tuple[float, float]]  # spans of time when other processes hogged the CPUs
    findings: list[Finding] = field(default_factory=list)

    def faults_of(self, call: Call) -> list[str]:
        """The faults met by a call's upstream requests (a watch's: its poller's, meanwhile)."""
        exchanges = list(self.exchanges.get(call.rid, ()))
        if call.subject:
            ended = call.ended or float("inf")
            exchanges += [
                e
                for e in self.polls
                if e.path.endswith(f"/{call.subject}") and call.started <= e.started <= ended
            ]
        found = [e.fault for e in exchanges if e.fault]
        return found + [f"http {e.status}" for e in exchanges if (e.status or 0) >= 500]

    def check_outcomes(self) -> None:
        """0. Every call that did not end as the load intends met a fault on its way."""
        for call in self.calls:
            if call.code == "OK" or _intended(call):
                continue
            faults = sorted(set(self.faults_of(call)))
            what = f"{call.rpc}: {call.code} {call.reason}".rstrip()
            explained = f"{call.code} after {' + '.join(faults)}" if faults else ""
            if not explained and self.starved_during(call):
                explained = f"{call.code} while other processes starved the machine of CPU"
            self.findings.append(Finding("outcome↔faults", call.rid, what, explained))

    def starved_during(self, call: Call) -> bool:
        ended = call.ended or float("inf")
        return any(start <= ended and call.started <= end for start, end in self.starved)

    def check_codes(self) -> None:
        """1. The client's outcome of each call against the gateway's access line."""
        for call in self.calls:
            lines = self.access.get(call.rid, [])
            if len(lines) != 1:
                self._no_line(call, lines)
                continue
            line = lines[0]
            if line["code"] != call.code:
                self.findings.append(
                    Finding(
                        "client↔access",
                        call.rid,
                        f"{call.rpc}: client {call.code}, gateway {line['code']} "
                        f"after {line['duration_ms']:.0f} ms",
                        self._why_codes_differ(call, line),
                    )
                )
            elif call.code == "OK" and "messages" in line and line["messages"] != call.messages:
                self.findings.append(
                    Finding(
                        "client↔access",
                        call.rid,
                        f"{call.rpc}: client read {call.messages} messages, gateway sent "
                        f"{line['messages']}",
                    )
                )

    def _no_line(self, call: Call, lines: list[dict[str, Any]]) -> None:
        what = f"{call.rpc} ({call.code}): {len(lines)} access lines"
        explained = ""
        if not lines and call.code == "DEADLINE_EXCEEDED" and not self.exchanges.get(call.rid):
            explained = "expired in the client before the gateway saw it"
            if self.starved_during(call):
                explained += ", while other processes starved the machine of CPU"
        self.findings.append(Finding("client↔access", call.rid, what, explained))

    def _why_codes_differ(self, call: Call, line: dict[str, Any]) -> str:
        near_deadline = line["duration_ms"] >= call.deadline * 1000 - DEADLINE_SLACK_MS
        if call.code == "DEADLINE_EXCEEDED" and line["code"] == "CANCELLED" and near_deadline:
            return "the client's deadline passed; the gateway logged CANCELLED"
        if call.code == "DEADLINE_EXCEEDED" and near_deadline:
            return f"the answer ({line['code']}) raced the client's deadline"
        if call.cancelled_by_client and line["code"] in ("CANCELLED", "OK"):
            return "cancelled by the client as the stream ended"
        return ""

    def check_attempts(self) -> None:
        """2. The gateway's upstream attempts of each call against the proxy's requests."""
        for call in self.calls:
            lines = self.access.get(call.rid, [])
            if len(lines) != 1:
                continue
            attempts = lines[0].get("attempts", 0)
            exchanges = [
                e for e in self.exchanges.get(call.rid, ()) if not CANCEL_PATH.search(e.path)
            ]
            if call.rpc == "ExecutionService/WatchExecution" or len(exchanges) == attempts:
                continue
            resets = sum(e.fault == "reset_before" for e in exchanges)
            what = (
                f"{call.rpc} ({lines[0]['code']}): {attempts} attempts, "
                f"{len(exchanges)} upstream requests"
            )
            explained = ""
            if 0 < len(exchanges) - attempts <= resets:
                explained = "the pool re-sent a request whose reused connection was reset"
            self.findings.append(Finding("access↔upstream", call.rid, what, explained))
        for rid in self.exchanges.keys() - {c.rid for c in self.calls}:
            self.findings.append(
                Finding(
                    "access↔upstream",
                    rid,
                    f"{len(self.exchanges[rid])} upstream requests with a request id no call used",
                )
            )

    def check_cancels(self) -> Counter[str]:
        """Cancel POSTs of abandoned streams: each for a stream that did not end OK."""
        outcome: Counter[str] = Counter()
        by_rid = {c.rid: c for c in self.calls}
        for rid, exchanges in self.exchanges.items():
            for exchange in exchanges:
                if not CANCEL_PATH.search(exchange.path):
                    continue
                call = by_rid.get(rid)
                if call is not None and call.code != "OK":
                    outcome[f"after {call.code}"] += 1
                else:
                    outcome["after OK (unexpected)"] += 1
                    self.findings.append(
                        Finding("access↔upstream", rid, "a cancel POST for a stream that ended OK")
                    )
        return outcome


def _intended(call: Call) -> bool:
    """Outcomes the load asks for: ids that do not exist (some deleted meanwhile), the
    gateway's own rate limits, streams the caller cancels."""
    if call.code == "NOT_FOUND":
        return call.rpc in NOT_FOUND_INTENDED
    if call.code == "RESOURCE_EXHAUSTED":
        return call.reason == "GATEWAY_RATE_LIMITED"
    return call.code == "CANCELLED" and call.cancelled_by_client


def upstream_by_route(
    ledger: list[Exchange], emulator_requests: dict[str, int]
) -> tuple[list[tuple[str, int, int]], Counter[str]]:
    """3. Requests the proxy forwarded, by route, against the emulator's own counts."""
    matchers = route_matchers(emulator_requests)
    forwarded: Counter[str] = Counter()
    fates: Counter[str] = Counter()
    for exchange in ledger:
        fates[exchange.fault or "relayed"] += 1
        if exchange.forwarded:
            forwarded[label_of(exchange, matchers)] += 1
    routes = sorted(set(forwarded) | set(emulator_requests))
    return [(r, forwarded[r], emulator_requests.get(r, 0)) for r in routes], fates


# --------------------------------------------------------------------------- the report


def table(rows: list[list[Any]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        say(
            "  "
            + "  ".join(
                str(x).rjust(w) if i else str(x).ljust(w)
                for i, (x, w) in enumerate(zip(row, widths, strict=False))
            )
        )


def thirds(samples: list[dict[str, Any]], key: str) -> tuple[float, float, float] | None:
    """Mean of the first and last third, and the least-squares slope per minute."""
    points = [(s["t"], s[key]) for s in samples if s.get(key) is not None]
    if len(points) < 6:
        return None
    third = len(points) // 3
    first = sum(v for _, v in points[:third]) / third
    last = sum(v for _, v in points[-third:]) / third
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points) or 1.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60
    return first, last, slope


FLATNESS = {  # series → (scale, unit, allowed last/first ratio, allowed absolute growth)
    "rss_kib": (1 / 1024, "MiB", 1.05, 2.0),
    "fds": (1, "", 1.10, 5),
    "threads": (1, "", 1.10, 2),
    "tasks": (1, "", 1.10, 10),
}


STARVED_LAG_MS = 200.0  # the gateway's loop this late ...
STARVED_GATEWAY_CPU = 0.8  # ... while the gateway itself used less than this share of a CPU
CPUS = os.cpu_count() or 1


def mark_starved(samples: list[dict[str, Any]]) -> None:
    """Flag the sampling windows in which other processes, not the gateway, held the CPUs:
    the gateway's loop or the load's lagged, the machine's load average passed its CPU
    count, and the gateway used little CPU of its own (a gateway blocking its own loop
    would use a lot)."""
    for prev, sample in itertools.pairwise(samples):
        span = sample["t"] - prev["t"]
        own = (sample["cpu_s"] - prev["cpu_s"]) / span if span > 0 else 0.0
        sample["gateway_cpu_share"] = round(own, 3)
        lag = max(sample.get("lag_ms") or 0, sample.get("driver_lag_ms") or 0)
        sample["starved"] = bool(
            lag >= STARVED_LAG_MS and sample["loadavg"] > CPUS and own < STARVED_GATEWAY_CPU
        )


def starved_spans(samples: list[dict[str, Any]], started: float) -> list[tuple[float, float]]:
    """The starved windows as spans of time.monotonic()."""
    return [
        (started + prev["t"], started + sample["t"])
        for prev, sample in itertools.pairwise(samples)
        if sample.get("starved")
    ]


def report_flatness(samples: list[dict[str, Any]], soak: Soak) -> dict[str, Any]:
    loaded = [s for s in samples if s["phase"] == "load"]
    loaded = [s for s in loaded if s["t"] - loaded[0]["t"] >= soak.warmup]
    starved = [s for s in loaded if s.get("starved")]
    loaded = [s for s in loaded if not s.get("starved")]
    say(
        f"-- flat after warm-up? ({len(loaded)} samples after the first {soak.warmup / 60:.1f} "
        "min; mean of the first third vs the last third; least-squares slope)"
    )
    if starved:
        say(
            f"  left out: {len(starved)} samples taken while other processes starved the CPUs "
            f"(load average up to {max(s['loadavg'] for s in starved):.1f} on {CPUS} CPUs, "
            f"loop lag up to {max(s['lag_ms'] or 0 for s in starved):.0f} ms in the gateway, "
            f"{max(s['driver_lag_ms'] for s in starved):.0f} ms in the load)"
        )
    verdicts: dict[str, Any] = {}
    for key, (scale, unit, ratio_ok, growth_ok) in FLATNESS.items():
        found = thirds(loaded, key)
        if found is None:
            say(f"  {key}: not enough samples" + (" (no task probe)" if key == "tasks" else ""))
            continue
        first, last, slope = (v * scale for v in found)
        ratio = last / first if first else float("nan")
        flat = ratio <= ratio_ok or last - first <= growth_ok
        verdicts[key] = {
            "first": first,
            "last": last,
            "ratio": ratio,
            "slope_per_min": slope,
            "flat": flat,
        }
        say(
            f"  {key:<8} {first:9.1f} → {last:9.1f} {unit:<3} ratio {ratio:.3f}  "
            f"slope {slope:+.3f} {unit}/min  {'flat' if flat else 'GROWING'}"
        )
    report_fd_kinds(loaded)
    return verdicts


def report_fd_kinds(loaded: list[dict[str, Any]]) -> None:
    """The descriptors by kind, first third against last third: which kind moves."""
    third = len(loaded) // 3
    if not third:
        return
    first, last = loaded[:third], loaded[-third:]
    kinds = sorted({k for s in first + last for k in s["fd_kinds"]})
    for kind in kinds:
        a = sum(s["fd_kinds"].get(kind, 0) for s in first) / third
        b = sum(s["fd_kinds"].get(kind, 0) for s in last) / third
        say(f"    fds {kind:<30} {a:7.1f} → {b:7.1f}")


SAMPLE_COLUMNS = (  # key in a sample → column heading
    ("t", "t s"), ("phase", "phase"), ("cpu_s", "cpu s"), ("emulator_cpu_s", "emu cpu"),
    ("driver_cpu_s", "drv cpu"), ("loadavg", "load"), ("lag_ms", "lag ms"),
    ("driver_lag_ms", "drv lag"),
    ("rss_kib", "rss KiB"), ("fds", "fds"), ("threads", "thr"), ("tasks", "tasks"),
    ("rpcs_in_flight", "rpcs"), ("sse_open", "sse"), ("watch_open", "watch"),
    ("pollers", "poll"), ("unary_conns", "conn u"), ("stream_conns", "conn s"),
    ("client_outstanding", "client"), ("proxy_connections", "proxy"), ("starved", "starved"),
)  # fmt: skip


def report_samples(samples: list[dict[str, Any]]) -> None:
    say("-- samples (every 10 s; one a minute shown, all in samples.json)")
    shown = [s for i, s in enumerate(samples) if i % 6 == 0 or s["phase"] != "load"]
    rows = [[_fmt(s.get(key)) for key, _ in SAMPLE_COLUMNS] for s in shown]
    table(rows, [heading for _, heading in SAMPLE_COLUMNS])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return str(value)


def report_tally(ledgers: Ledgers) -> None:
    say("-- client tally (calls by RPC and outcome) | gateway access lines by code")
    client: dict[str, Counter[str]] = defaultdict(Counter)
    for call in ledgers.calls:
        client[call.rpc][call.code] += 1
    gateway: dict[str, Counter[str]] = defaultdict(Counter)
    for lines in ledgers.access.values():
        for line in lines:
            gateway[short_method(line["method"])][line["code"]] += 1
    rows = []
    for rpc in sorted(set(client) | set(gateway)):
        c, g = client[rpc], gateway[rpc]
        rows.append([rpc, sum(c.values()), sum(g.values()), _codes(c), _codes(g)])
    logged = sum(len(v) for v in ledgers.access.values())
    rows.append(["total", len(ledgers.calls), logged, "", ""])
    table(rows, ["rpc", "client", "gateway", "client outcomes", "gateway codes"])
    reasons = Counter(f"{c.code}/{c.reason}" for c in ledgers.calls if c.reason)
    say("  error reasons seen by the client: " + _codes(reasons))


def _codes(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common())


def report_findings(findings: list[Finding]) -> int:
    explained = Counter(f"{f.check}: {f.explained}" for f in findings if f.explained)
    unexplained = [f for f in findings if not f.explained]
    say("-- reconciliation: differences explained by faults or by the deadline")
    for what, n in explained.most_common():
        say(f"  {n:6d}  {what}")
    say(f"-- unexplained differences: {len(unexplained)}")
    for finding in unexplained[:40]:
        say(f"  [{finding.check}] {finding.rid}: {finding.what}")
    return len(unexplained)


# --------------------------------------------------------------------------- the run


def git_revision() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head} with uncommitted work" if dirty else head


@dataclass
class Run:
    soak: Soak
    redis: RedisProcess
    proxy: FaultProxy
    emulator: subprocess.Popen[bytes]
    emulator_url: str
    gateway: subprocess.Popen[bytes]
    admin: str
    load: Load
    sampler: Sampler
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


async def start(soak: Soak, stack: contextlib.AsyncExitStack) -> Run:
    """Start everything; ``stack`` stops each part again, however the run ends."""
    soak.out.mkdir(parents=True, exist_ok=True)
    keys = api_keys(soak.seed)
    redis = RedisProcess(soak.out)
    stack.callback(redis.stop)
    redis.start()
    emulator, emulator_port = start_emulator(soak, keys)
    stack.callback(stop_process, emulator)
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    await wait_http(f"{emulator_url}/_emulator/health")
    proxy = FaultProxy(("127.0.0.1", emulator_port), FaultPlan(rate=0.0), soak.seed)
    stack.push_async_callback(proxy.close)
    ports = {"proxy": await proxy.start(), "grpc": free_port(), "admin": free_port()}
    ports["otlp"] = free_port()
    env = gateway_env(soak, ports, redis.url)
    argv = [str(PYTHON), "-m", "gateway", "serve"]
    gateway = start_process(argv, soak.out / "gateway.log", env)
    stack.callback(stop_process, gateway)
    target = f"127.0.0.1:{ports['grpc']}"
    await wait_grpc(target, gateway)
    load = Load(target, keys, soak.seed)
    stack.push_async_callback(load.close)
    admin = f"http://127.0.0.1:{ports['admin']}"
    ports["redis"] = redis.port
    sampler = Sampler(
        gateway.pid,
        admin,
        soak.out / "tasks.jsonl",
        load,
        proxy,
        time.monotonic(),
        ports,
        emulator.pid,
    )
    return Run(soak, redis, proxy, emulator, emulator_url, gateway, admin, load, sampler)


async def soak_phase(run: Run, session: aiohttp.ClientSession) -> None:
    soak = run.soak
    plan = FaultPlan(rate=soak.fault_rate * (1 - ERROR_SHARE))
    run.proxy.plan = plan
    phase = "load"
    sampling = asyncio.ensure_future(run.sampler.run(session, lambda: phase))
    chaos = [
        asyncio.ensure_future(run.sampler.watch_loop()),
        asyncio.ensure_future(rotate_errors(run.emulator_url, soak)),
        asyncio.ensure_future(redis_outage(run.redis, soak, run.events)),
    ]
    try:
        await run.load.drive(soak.seconds, soak.rate)
        phase = "drain"
        say(f"soak: load over; waiting for {len(run.load.tasks)} calls to end")
        if run.load.tasks:
            await asyncio.wait(set(run.load.tasks), timeout=DRAIN_WAIT)
    finally:
        for task in [sampling, *chaos]:
            task.cancel()
        await asyncio.gather(sampling, *chaos, return_exceptions=True)
    run.proxy.plan = FaultPlan(rate=0.0)
    await errors_off(run.emulator_url)
    if run.redis.process is None:
        run.redis.start()


async def idle_sample(
    run: Run, session: aiohttp.ClientSession, phase: str, settle: float
) -> dict[str, Any]:
    """A sample once the gateway has been idle ``settle`` seconds (and the probe has spoken)."""
    await asyncio.sleep(settle)
    sample = await run.sampler.sample(session, phase)
    probe = last_probe(run.sampler.probe, time.time() - SAMPLE_EVERY / 2)
    sample["tasks_top"] = probe["top"] if probe else None
    return sample


async def execute(run: Run) -> None:
    soak = run.soak
    # a connection per scrape: none of ours stays open in the gateway's admin server
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        say(f"soak: set-up through the gateway (logs in {soak.out})")
        await run.load.setup()
        before = await idle_sample(run, session, "idle before", IDLE_BEFORE)
        say(
            f"soak: {soak.minutes:g} min of load at {soak.rate:g} arrivals/s, faults "
            f"{soak.fault_rate:.2%}, seed {soak.seed}"
        )
        started, wall = time.monotonic(), time.time()
        await soak_phase(run, session)
        run.summary["load_seconds"] = time.monotonic() - started
        run.summary["load_wall"] = [wall, wall + soak.seconds]
        after = await idle_sample(run, session, "idle after", IDLE_AFTER)
        run.summary["metrics_at_end"] = run.sampler.metrics
        async with session.get(f"{run.emulator_url}/_emulator/stats") as response:
            run.summary["emulator"] = await response.json()
    run.summary["idle"] = {"before": before, "after": after}
    code, seconds = stop_process(run.gateway)
    run.summary["gateway_exit"] = {"code": code, "seconds": round(seconds, 2)}


def analyse(run: Run) -> int:
    soak, summary = run.soak, run.summary
    access, other, unparsable = read_gateway_log(soak.out / "gateway.log")
    exchanges: dict[str, list[Exchange]] = defaultdict(list)
    polls: list[Exchange] = []
    rids = {c.rid for c in run.load.calls}
    for exchange in run.proxy.ledger:
        if exchange.request_id in rids:
            exchanges[exchange.request_id].append(exchange)
        else:
            polls.append(exchange)
    starved = starved_spans(run.sampler.samples, run.sampler.started)
    ledgers = Ledgers(run.load.calls, access, exchanges, polls, starved)
    say()
    say(f"== soak run of {summary['began']}, commit {summary['revision']} (when it began)")
    say(
        f"   {' '.join(sys.argv)}  (minutes {soak.minutes:g}, seed {soak.seed}, fault rate "
        f"{soak.fault_rate:.2%}, {soak.rate:g} arrivals/s; load ran "
        f"{summary['load_seconds']:.0f} s)"
    )
    mark_starved(run.sampler.samples)
    report_samples(run.sampler.samples)
    summary["flatness"] = report_flatness(run.sampler.samples, soak)
    report_idle(summary["idle"])
    if soak.count_objects:
        start, end = summary["load_wall"]
        report_objects(soak.out / "tasks.jsonl", start + soak.warmup, end)
    report_faults(run, polls)
    report_tally(ledgers)
    report_upstream(run, ledgers, polls)
    ledgers.check_outcomes()
    ledgers.check_codes()
    ledgers.check_attempts()
    summary["cancel_posts"] = ledgers.check_cancels()
    say(f"  cancel POSTs of abandoned streams: {_codes(summary['cancel_posts']) or 'none'}")
    report_metrics_vs_log(summary["metrics_at_end"], access)
    say("-- gateway log lines other than access lines (level logger: message)")
    for what, n in other.most_common(25):
        say(f"  {n:6d}  {what}")
    if unparsable:
        say(f"  {unparsable:6d}  lines that are not JSON")
    exit_info = summary["gateway_exit"]
    say(
        f"-- gateway stopped by SIGTERM: exit code {exit_info['code']} after "
        f"{exit_info['seconds']} s"
    )
    unexplained = report_findings(ledgers.findings)
    summary["unexplained"] = [asdict(f) for f in ledgers.findings if not f.explained]
    summary["explained"] = Counter(
        f"{f.check}: {f.explained}" for f in ledgers.findings if f.explained
    )
    problems = verdict(summary, unexplained)
    say("== soak: " + ("; ".join(problems) if problems else "pass"))
    return len(problems)


IDLE_GAUGES = ("rpcs_in_flight", "sse_open", "watch_open", "pollers", "unary_conns",
               "stream_conns", "queue")  # fmt: skip


def verdict(summary: dict[str, Any], unexplained: int) -> list[str]:
    """What fails the run: unexplained differences, growth, anything left over when idle."""
    problems = [f"{key} growing" for key, v in summary["flatness"].items() if not v["flat"]]
    if unexplained:
        problems.append(f"{unexplained} unexplained differences")
    before, after = summary["idle"]["before"], summary["idle"]["after"]
    problems += [f"{key} {after[key]:g} when idle" for key in IDLE_GAUGES if after.get(key)]
    if (after.get("tasks") or 0) > (before.get("tasks") or 0):
        problems.append(f"asyncio tasks {before['tasks']} → {after['tasks']} when idle")
    if summary["gateway_exit"]["code"] != 0:
        problems.append(f"gateway exit code {summary['gateway_exit']['code']}")
    return problems


def report_objects(path: Path, start: float, end: float) -> None:
    """Object counts by type after warm-up: mean of the first third against the last third
    (single counts swing with the calls in flight and the spans waiting for export)."""
    counts = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if "objects" in entry and start <= entry["t"] <= end:
                counts.append(Counter(entry["objects"]))
    third = len(counts) // 3
    if not third:
        say("-- object counts: fewer than three counts under load after warm-up")
        return
    first = sum(counts[:third], Counter())
    last = sum(counts[-third:], Counter())
    grown = Counter({k: (last[k] - first[k]) / third for k in last if last[k] > first[k]})
    say(
        f"-- gateway objects by type after warm-up ({len(counts)} counts; mean of the first "
        f"third → the last: all tracked {first.total() / third:.0f} → {last.total() / third:.0f})"
    )
    for name, n in grown.most_common(12):
        say(f"  {n:+9.1f}  {name} ({first[name] / third:.0f} → {last[name] / third:.0f})")


def report_idle(idle: dict[str, dict[str, Any]]) -> None:
    before, after = idle["before"], idle["after"]
    say("-- idle before the load vs idle after it (everything drained)")
    for key in (
        "rss_kib",
        "fds",
        "threads",
        "tasks",
        "rpcs_in_flight",
        "sse_open",
        "watch_open",
        "pollers",
        "unary_conns",
        "stream_conns",
        "queue",
        "proxy_connections",
    ):
        say(f"  {key:<18} {_fmt(before.get(key)):>8} → {_fmt(after.get(key)):>8}")
    kinds = sorted(set(before["fd_kinds"]) | set(after["fd_kinds"]))
    for kind in kinds:
        say(
            f"    fds {kind:<30} {before['fd_kinds'].get(kind, 0):>4} → "
            f"{after['fd_kinds'].get(kind, 0):>4}"
        )
    if before.get("tasks_top") and after.get("tasks_top"):
        grown = Counter(dict(after["tasks_top"])) - Counter(dict(before["tasks_top"]))
        say("  tasks more numerous after the load: " + (_codes(grown) or "none"))


def report_faults(run: Run, polls: list[Exchange]) -> None:
    drawn = run.proxy.faults_drawn()
    emulator = run.summary["emulator"]
    statuses = Counter(e.status for e in run.proxy.ledger if (e.status or 0) >= 500)
    say("-- faults injected")
    say(f"  proxy ({len(run.proxy.ledger)} requests): {_codes(drawn) or 'none'}")
    say(
        f"  emulator 5xx: {emulator['faults_injected']}; the proxy saw "
        + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    )
    for event in run.events:
        say(f"  {event['t']:7.1f}s  {event['event']}")
    m = run.summary["metrics_at_end"]
    say(
        "  gateway redis errors: "
        f"{metric_sum(m, 'gateway_shared_limiter_redis_errors_total'):.0f}; "
        f"limiter: admitted {metric_sum(m, 'gateway_limiter_calls_total', 'admitted'):.0f}, "
        f"delayed {metric_sum(m, 'gateway_limiter_calls_total', 'delayed'):.0f}, "
        f"refused {metric_sum(m, 'gateway_limiter_calls_total', 'refused'):.0f}; "
        f"breaker opened {metric_sum(m, 'gateway_circuit_breaker_opened_total'):.0f}"
    )
    if run.proxy.protocol_errors:
        say(f"  proxy connection errors: {_codes(run.proxy.protocol_errors)}")
    if run.load.skipped:
        say(f"  scenarios skipped (over {MAX_OUTSTANDING} outstanding): {run.load.skipped}")


def report_upstream(run: Run, ledgers: Ledgers, polls: list[Exchange]) -> None:
    emulator_requests: dict[str, int] = run.summary["emulator"]["requests"]
    rows, fates = upstream_by_route(run.proxy.ledger, emulator_requests)
    say("-- upstream ledger: requests the proxy forwarded vs requests the emulator counted")
    table(
        [[r, f, e, "" if f == e else f"{f - e:+d}"] for r, f, e in rows],
        ["route", "proxy", "emulator", "diff"],
    )
    say(f"  proxy requests by fate: {_codes(fates)}")
    for route, forwarded, counted in rows:
        if forwarded != counted:
            ledgers.findings.append(
                Finding(
                    "upstream↔emulator",
                    route,
                    f"proxy forwarded {forwarded}, emulator counted {counted}",
                )
            )
    poll_routes = Counter(
        f"{e.method} {re.sub(r'/[a-z]+_[0-9a-f]+', '/{id}', e.path)}" for e in polls
    )
    watches = sum(c.rpc == "ExecutionService/WatchExecution" for c in ledgers.calls)
    say(
        f"  requests from no call (watch pollers) {len(polls)}: {_codes(poll_routes)}; "
        f"{len(polls) / max(watches, 1):.1f} per watch"
    )
    for route in poll_routes:
        if not route.startswith("GET /v1/executions/"):
            ledgers.findings.append(
                Finding("access↔upstream", route, "upstream requests of no call, not a poll")
            )


def report_metrics_vs_log(
    metrics: dict[str, float], access: dict[str, list[dict[str, Any]]]
) -> None:
    """The gateway's own two views: /metrics call counts against its access lines."""
    counted = metric_sum(metrics, "gateway_rpc_duration_seconds_count")
    logged = sum(len(v) for v in access.values())
    retries = metric_sum(metrics, "gateway_upstream_retries_total")
    cancels = metric_sum(metrics, "gateway_upstream_retries_total", "POST cancel of")
    logged_retries = sum(max(0, line.get("attempts", 0) - 1) for v in access.values() for line in v)
    say(
        f"-- gateway /metrics vs its access log: calls {counted:.0f} vs {logged} lines; "
        f"retries {retries - cancels:.0f} vs {logged_retries} attempts beyond the first "
        f"(and {cancels:.0f} retries of cancel POSTs, which belong to no access line)"
    )


def write_outputs(run: Run) -> None:
    out = run.soak.out
    (out / "samples.json").write_text(json.dumps(run.sampler.samples, indent=1))
    (out / "summary.json").write_text(json.dumps(run.summary, indent=1, default=str))
    with (out / "calls.jsonl").open("w") as calls:
        for call in run.load.calls:
            calls.write(json.dumps(asdict(call)) + "\n")
    with (out / "upstream.jsonl").open("w") as ledger:
        for exchange in run.proxy.ledger:
            ledger.write(json.dumps(asdict(exchange)) + "\n")


async def main(soak: Soak) -> int:
    async with contextlib.AsyncExitStack() as stack:
        began = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        revision = git_revision()  # before the run: others may commit while it runs
        run = await start(soak, stack)
        run.summary.update(began=began, revision=revision)
        await execute(run)
        await run.load.close()
        await run.proxy.close()
        problems = analyse(run)
        write_outputs(run)
        (soak.out / "report.txt").write_text("\n".join(REPORT) + "\n")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
