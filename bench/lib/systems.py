"""The servers under test, each a process pinned to the same CPUs, and the load tools.

Every gRPC system serves ``gagiteck.v1.AgentService/GetAgent`` on 127.0.0.1 in front of
the same nginx upstream: the naive passthrough, vanguard-go, and the gateway (one process
per variant: a variant is a name and extra environment, e.g. tracing or limits switched on).
:class:`GrpcSystem` starts any such server and waits until it answers GetAgent correctly;
every driver that starts gRPC servers (run.py, compare.py, upstream_clients.py,
profile_gateway.py) goes through it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from .nginx_upstream import AGENT_ID, LIST_SIZE, expected_agent, expected_page
from .tooling import BUILD, PYTHON, ROOT

LOGS = BUILD / "logs"
METHOD = "gagiteck.v1.AgentService/GetAgent"  # the default call of every driver
CREDENTIAL = "Bearer ggt_bench_0123456789abcdef"
BARE = "bare grpc.aio handler"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_answer(target: str, timeout: float = 5.0) -> str | None:
    """One GetAgent call; None when the answer is exactly the expected Agent, else why not."""
    from gagiteck.v1 import agent_pb2, agent_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub: Any = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            answer = stub.GetAgent(
                agent_pb2.GetAgentRequest(agent_id=AGENT_ID),
                timeout=timeout,
                metadata=[("authorization", CREDENTIAL)],
            )
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    if answer != expected_agent():
        return f"unexpected answer: {answer}"
    return None


@dataclass
class Variant:
    """A gateway configuration to measure: a name, extra environment, and its CPUs."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    cpus: str | None = None  # None: the CPUs every system under test gets


@dataclass
class GrpcSystem:
    """A gRPC server process pinned to ``cpus``; ``target`` is its HOST:PORT.

    ``argv`` runs in ``cwd`` (the repository root unless told, e.g. a worktree of another
    revision) with ``env`` over this process's environment; its output goes to
    build/bench/logs/<name>.log. The server listens on ``port``, or, with
    ``announces_port``, prints ``PORT <n>`` as its first line of output.
    """

    name: str
    argv: list[str]
    cpus: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[str] | None = None
    announces_port: bool = False
    cwd: Path = ROOT

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the process; return once it answers GetAgent exactly as expected."""
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"{self.name.replace(' ', '_').replace('/', '_')}.log").open("w")
        self.process = subprocess.Popen(
            ["taskset", "-c", self.cpus, *self.argv],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE if self.announces_port else log,
            stderr=log,
            text=True,
        )
        if self.announces_port:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if not line.startswith("PORT "):
                raise SystemExit(f"bench: {self.name} did not start; see {log.name}")
            self.port = int(line.split()[1])
        deadline = time.monotonic() + 60
        problem: str | None = "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited at start; see {log.name}")
            problem = check_answer(self.target, timeout=2)
            if problem is None:
                return
            time.sleep(0.2)
        raise SystemExit(f"bench: {self.name} never answered GetAgent correctly: {problem}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def naive_system(upstream_url: str, cpus: str) -> GrpcSystem:
    return GrpcSystem(
        "naive passthrough",
        [str(PYTHON), "bench/lib/naive_passthrough.py", "--upstream", upstream_url],
        cpus,
        announces_port=True,
    )


def bare_system(cpus: str) -> GrpcSystem:
    return GrpcSystem(BARE, [str(PYTHON), "bench/lib/bare_handler.py"], cpus, announces_port=True)


def vanguard_system(binary: Path, upstream_url: str, cpus: str) -> GrpcSystem:
    return GrpcSystem(
        "vanguard-go",
        [str(binary), "-upstream", upstream_url],
        cpus,
        env={"GOMAXPROCS": str(len(cpu_list(cpus)))},
        announces_port=True,
    )


def gateway_system(variant: Variant, upstream_url: str, cpus: str) -> GrpcSystem:
    port = free_port()
    env = {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_UPSTREAM_URL": upstream_url,
        "GATEWAY_LOG_LEVEL": "warning",
        # each gateway process gets its own admin port (a setting that may not exist yet;
        # unknown GATEWAY_* variables are ignored)
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        # "{upstream}" in a variant's value is the upstream's URL (e.g. an OTLP sink)
        **{k: v.replace("{upstream}", upstream_url) for k, v in variant.env.items()},
    }
    return GrpcSystem(
        variant.name,
        [str(PYTHON), "-m", "gateway", "serve"],
        variant.cpus or cpus,
        env=env,
        port=port,
    )


def cpu_list(cpus: str) -> list[int]:
    out: list[int] = []
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


# --------------------------------------------------------------------------- load tools


GET_AGENT = "gagiteck.v1.AgentService/GetAgent"
LIST_AGENTS = "gagiteck.v1.AgentService/ListAgents"
CREATE_AGENT = "gagiteck.v1.AgentService/CreateAgent"


def request_file(method: str = GET_AGENT) -> Path:
    """The request of every call of ``method``, serialized, for ghz --binary-file."""
    from gagiteck.v1 import agent_pb2

    request: Any
    if method == GET_AGENT:
        request = agent_pb2.GetAgentRequest(agent_id=AGENT_ID)
    elif method == LIST_AGENTS:
        request = agent_pb2.ListAgentsRequest(limit=LIST_SIZE)
    else:
        request = agent_pb2.CreateAgentRequest(agent=new_agent())
    path = BUILD / f"{method.rsplit('/', 1)[1]}.bin"
    path.write_bytes(request.SerializeToString())
    return path


def new_agent() -> Any:
    """The agent the mixed workload's CreateAgent sends (a body of about 300 bytes)."""
    from gagiteck.v1 import agent_pb2

    agent = agent_pb2.Agent(
        name="Research Assistant",
        system_prompt="You are a careful research assistant. Cite your sources.",
        config=agent_pb2.AgentConfig(model="claude-3-sonnet", max_tokens=4096, temperature=0.7),
        tools=["web_search", "calculator"],
    )
    agent.metadata.update({"department": "support", "tier": 2, "owner": "bench"})
    return agent


def check_mixed(target: str, timeout: float = 5.0) -> str | None:
    """One ListAgents and one CreateAgent call; None when both answers are as expected."""
    from gagiteck.v1 import agent_pb2, agent_pb2_grpc

    metadata = [("authorization", CREDENTIAL)]
    with grpc.insecure_channel(target) as channel:
        stub: Any = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            page = stub.ListAgents(
                agent_pb2.ListAgentsRequest(limit=LIST_SIZE), timeout=timeout, metadata=metadata
            )
            created = stub.CreateAgent(
                agent_pb2.CreateAgentRequest(agent=new_agent()), timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    if page != expected_page():
        return f"unexpected ListAgents answer: {str(page)[:300]}"
    if created != expected_agent():
        return f"unexpected CreateAgent answer: {created}"
    return None


@dataclass(frozen=True)
class Workload:
    """What the load tool sends: each RPC with the calls it keeps in flight, and the
    connections they are spread over (one ghz process per RPC, all at once)."""

    name: str
    parts: tuple[tuple[str, int, int], ...]  # (method, calls in flight, connections)

    @property
    def concurrency(self) -> int:
        return sum(part[1] for part in self.parts)

    @property
    def mixed(self) -> bool:
        return any(part[0] != GET_AGENT for part in self.parts)


@dataclass
class Load:
    calls: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    client_cpu_seconds: float = 0.0
    client_peak_rss: int = 0


def ghz(
    binary: Path,
    protoset: Path,
    target: str,
    cpus: str,
    concurrency: int,
    seconds: float,
    rps: float | None = None,
    *,
    method: str = METHOD,
    connections: int | None = None,
) -> Load:
    """One ghz run pinned to ``cpus``; every status that is not OK is an error."""
    process = _start_ghz(
        binary, protoset, target, cpus, concurrency, seconds, rps, method, connections
    )
    return _ghz_result(process)


def ghz_workload(
    binary: Path,
    protoset: Path,
    target: str,
    cpus: str,
    workload: Workload,
    seconds: float,
    rps: float | None = None,
) -> Load:
    """``workload`` against ``target``: its ghz runs side by side, their calls summed (the
    latency figures are the first part's: each run reports its own percentiles; errors
    are named by their method)."""
    share = None if rps is None else rps / workload.concurrency
    processes = [
        _start_ghz(
            binary,
            protoset,
            target,
            cpus,
            concurrency,
            seconds,
            None if share is None else share * concurrency,
            method,
            connections,
        )
        for method, concurrency, connections in workload.parts
    ]
    loads = [_ghz_result(process) for process in processes]
    calls = sum(load.calls for load in loads)
    total = max(load.seconds for load in loads)
    errors: dict[str, int] = {}
    for method, load in zip((part[0] for part in workload.parts), loads, strict=True):
        for code, n in load.errors.items():
            errors[f"{method.rsplit('/', 1)[1]}: {code}"] = n
    return Load(
        calls, total, calls / total if total else 0.0, loads[0].p50_ms, loads[0].p99_ms, errors
    )


def _start_ghz(
    binary: Path,
    protoset: Path,
    target: str,
    cpus: str,
    concurrency: int,
    seconds: float,
    rps: float | None,
    method: str,
    connections: int | None,
) -> subprocess.Popen[str]:
    argv = [
        "taskset",
        "-c",
        cpus,
        str(binary),
        "--insecure",
        "--protoset",
        str(protoset),
        "--call",
        method,
        # the request pre-serialized and no templates: ghz's own cost per call drops by
        # about a third, which matters because it shares its CPU with nginx
        "--binary-file",
        str(request_file(method)),
        "--disable-template-functions",
        "--disable-template-data",
        "-m",
        json.dumps({"authorization": CREDENTIAL}),
        "-c",
        str(concurrency),
        "--connections",
        str(connections or os.environ.get("BENCH_GHZ_CONNECTIONS", "1")),
        "-z",
        f"{seconds:g}s",
        "--duration-stop",
        "wait",
        "--cpus",
        str(len(cpu_list(cpus))),
        "-O",
        "json",
    ]
    if rps:
        argv += ["--rps", str(round(rps))]
    return subprocess.Popen(
        [*argv, target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ghz_result(process: subprocess.Popen[str]) -> Load:
    stdout, stderr = process.communicate()
    if process.returncode != 0 or not stdout.strip():
        raise SystemExit(f"bench: ghz failed ({process.returncode}): {stderr[-2000:]}")
    report = json.loads(stdout)
    statuses: dict[str, int] = report.get("statusCodeDistribution") or {}
    errors = {code: n for code, n in statuses.items() if code != "OK"}
    for message, n in (report.get("errorDistribution") or {}).items():
        errors.setdefault(message[:120], n)
    ok = statuses.get("OK", 0)
    percentiles = {
        p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []
    }
    total = report["total"] / 1e9
    return Load(
        calls=ok,
        seconds=total,
        rps=ok / total if total else 0.0,
        p50_ms=percentiles.get(50, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        errors=errors if ok else {**errors, "no successful call": 1},
    )


def rest_load(
    url: str, cpus: str, concurrency: int, seconds: float, rps: float | None = None
) -> Load:
    """bench/lib/rest_load.py pinned to ``cpus`` (the direct REST client)."""
    argv = [
        "taskset",
        "-c",
        cpus,
        str(PYTHON),
        "bench/lib/rest_load.py",
        url,
        AGENT_ID,
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
    ]
    if rps:
        argv += ["--rps", str(rps)]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench: rest_load failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout)
    return Load(
        calls=r["calls"],
        seconds=r["seconds"],
        rps=r["rps"],
        p50_ms=r["p50_ms"],
        p99_ms=r["p99_ms"],
        errors=r["errors"] if r["calls"] else {**r["errors"], "no successful call": 1},
        client_cpu_seconds=r["cpu_seconds"],
        client_peak_rss=r["peak_rss"],
    )


def wrk(binary: str, url: str, cpus: str, connections: int, seconds: float) -> Load:
    """wrk (one thread) against the upstream: how much nginx serves on its CPU."""
    out = subprocess.run(
        ["taskset", "-c", cpus, binary, "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: wrk failed: {out.stderr[-2000:]}")
    calls, errors, elapsed = 0, {}, seconds
    for line in out.stdout.splitlines():
        words = line.split()
        if "requests in" in line:
            calls, elapsed = int(words[0]), float(words[3].rstrip(",").rstrip("s"))
        elif line.strip().startswith("Non-2xx"):
            errors["non-2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors"):
            errors["socket errors"] = 1
    if not calls:
        print(out.stdout, file=sys.stderr)
        errors["no successful call"] = 1
    return Load(calls, elapsed, calls / elapsed, float("nan"), float("nan"), errors)
