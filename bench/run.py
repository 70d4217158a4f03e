"""``make bench``: the gateway against its yardsticks, all measured in one invocation.

    .venv/bin/python bench/run.py

On 127.0.0.1, one nginx upstream (pinned to the load CPU) answers GetAgent with fixed JSON.
In front of it, pinned to the same CPU(s) of their own: the naive passthrough, vanguard-go
and the gateway (one process per variant). Direct REST is an aiohttp client on those CPUs
calling nginx itself. Load comes from ghz (gRPC) and bench/lib/rest_load.py (REST), pinned
to the load CPU. Systems are interleaved in rounds, forward then backward, so drift cancels:

1. closed loop: ``BENCH_CONCURRENCY`` calls in flight for ``BENCH_SECONDS``: calls/s,
   and the server's CPU time per call (/proc utime+stime delta / calls); nginx's capacity
   (wrk, one thread, on the systems' CPUs) is measured in the same rounds;
2. open loop: calls started at 50% of each system's own median closed-loop rate for
   ``BENCH_OPEN_SECONDS``: p50 and p99 latency.

Every answer counts only if it is right: ghz must report status OK for every call, the
REST client checks status 200 and the JSON body, each system's answer is compared with
the expected Agent before and after the runs, and nginx's request counter must grow by
one per call. Figures are medians over ``BENCH_ROUNDS`` rounds. Raw samples go to
build/bench/results.json.

Load shapes (BENCH_WORKLOADS, default "get,wide,mixed"; the first is the headline, with
every system and the open loop): GetAgent with BENCH_CONCURRENCY in flight over one
connection; GetAgent with BENCH_WIDE (128) over BENCH_WIDE_CONNECTIONS (16); and a mixed
load of GetAgent, ListAgents (a page of 20) and CreateAgent at once. The gateway is
measured as deployed (tracing 5%, both buckets, the JSON access log) beside its defaults,
and a bare grpc.aio handler gives the CPU floor.

Settings (environment): BENCH_ROUNDS (4), BENCH_SECONDS (4), BENCH_OPEN_SECONDS (4),
BENCH_CONCURRENCY (50), BENCH_WARMUP (6), BENCH_SUT_CPUS (0), BENCH_LOAD_CPUS (1),
BENCH_SYSTEMS (comma-separated names to keep), and the gateway hooks:
BENCH_GATEWAY_VARIANTS, a JSON object {"name": {"ENV": "value", ...}, ...} of extra
gateway processes to measure, and BENCH_GATEWAY_WORKERS, e.g. "1,2", one variant per
GATEWAY_WORKERS=N (for N > 1 it gets all CPUs, so it shares them with the load tools).
BENCH_GHZ_CONNECTIONS (default 1) spreads ghz's calls over that many connections: the
kernel balances connections, not calls, over the workers.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lib import procstat, tooling
from lib.nginx_upstream import AGENT_ID, Nginx
from lib.systems import (
    BARE,
    CREATE_AGENT,
    GET_AGENT,
    LIST_AGENTS,
    GrpcSystem,
    Load,
    Variant,
    Workload,
    bare_system,
    check_answer,
    check_mixed,
    cpu_list,
    free_port,
    gateway_system,
    ghz_workload,
    naive_system,
    rest_load,
    vanguard_system,
    wrk,
)

# ---- the gateway variants measured (the lead adds e.g. tracing at 5%, limits on) -------
_TRACING = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{upstream}/v1/traces",  # nginx answers 200
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
}
_LIMITS = {"GATEWAY_RATE_LIMIT_RPS": "1000000", "GATEWAY_CALLER_RATE_LIMIT_RPS": "1000000"}
DEPLOYED_ENV = {
    # deploy/overlays/production: tracing at 5% with export, the global and per-caller
    # buckets (at rates never reached: what is measured is their cost), a JSON access line
    # per call. Redis is left out: the shared buckets are a round trip of their own.
    **_TRACING,
    "OTEL_TRACES_SAMPLER_ARG": "0.05",
    **_LIMITS,
    "GATEWAY_LOG_LEVEL": "info",
    "GATEWAY_LOG_FORMAT": "json",
}
GATEWAY_VARIANTS: list[Variant] = [
    Variant("gateway"),
    Variant("gateway (as deployed)", DEPLOYED_ENV),
    Variant("gateway (tracing 5%)", {**_TRACING, "OTEL_TRACES_SAMPLER_ARG": "0.05"}),
    Variant("gateway (limits on)", _LIMITS),
]
# -----------------------------------------------------------------------------------------

UPSTREAM = "upstream (nginx, wrk)"
DIRECT = "direct REST (aiohttp)"
BASE = "gateway"
DEPLOYED = "gateway (as deployed)"
NAIVE = "naive passthrough"
VANGUARD = "vanguard-go"
DIRECT_AT = "direct REST at {}'s rate"
WIDE_SYSTEMS = (NAIVE, VANGUARD, BASE, DEPLOYED)
"""The systems measured under the other load shapes (the first one measures them all)."""


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Settings:
    rounds: int = int(env_float("BENCH_ROUNDS", 4))
    seconds: float = env_float("BENCH_SECONDS", 4)
    open_seconds: float = env_float("BENCH_OPEN_SECONDS", 4)
    concurrency: int = int(env_float("BENCH_CONCURRENCY", 50))
    wide: int = int(env_float("BENCH_WIDE", 128))
    wide_connections: int = int(env_float("BENCH_WIDE_CONNECTIONS", 16))
    warmup: float = env_float("BENCH_WARMUP", 6)
    sut_cpus: str = os.environ.get("BENCH_SUT_CPUS", "0")
    load_cpus: str = os.environ.get("BENCH_LOAD_CPUS", "1")
    workloads: str = os.environ.get("BENCH_WORKLOADS", "get,wide,mixed")

    def all_workloads(self) -> list[Workload]:
        """The load shapes, the first one the headline's: GetAgent over one connection;
        GetAgent over many; and three RPCs at once (a GET, a page of 20 agents, a POST)."""
        c = self.concurrency
        defined = {
            "get": Workload(f"GetAgent, {c} in flight, 1 connection", ((GET_AGENT, c, 1),)),
            "wide": Workload(
                f"GetAgent, {self.wide} in flight, {self.wide_connections} connections",
                ((GET_AGENT, self.wide, self.wide_connections),),
            ),
            "mixed": Workload(
                f"mixed, {c} in flight over 3 connections: GetAgent {c // 2}, "
                f"ListAgents (20 agents) {c // 5}, CreateAgent {c - c // 2 - c // 5}",
                (
                    (GET_AGENT, c // 2, 1),
                    (LIST_AGENTS, c // 5, 1),
                    (CREATE_AGENT, c - c // 2 - c // 5, 1),
                ),
            ),
        }
        return [defined[name.strip()] for name in self.workloads.split(",") if name.strip()]


@dataclass
class Sample:
    """One measured run of one system."""

    rps: float
    calls: int
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_us_per_call: float = float("nan")
    upstream_per_call: float = float("nan")
    busy: dict[int, float] = field(default_factory=dict)
    target_rps: float = 0.0
    problems: list[str] = field(default_factory=list)


def variants() -> list[Variant]:
    found = list(GATEWAY_VARIANTS)
    for name, env in json.loads(os.environ.get("BENCH_GATEWAY_VARIANTS", "{}")).items():
        found.append(Variant(name, {k: str(v) for k, v in env.items()}))
    for n in filter(None, os.environ.get("BENCH_GATEWAY_WORKERS", "").split(",")):
        cpus = None if int(n) == 1 else f"0-{(os.cpu_count() or 1) - 1}"
        found.append(Variant(f"gateway ({n} workers)", {"GATEWAY_WORKERS": n}, cpus))
    return found


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.tools = tooling.apt_tools()
        self.ghz = tooling.go_tool(tooling.GHZ)
        self.protoset = tooling.descriptor_set()
        vanguard = tooling.vanguard_binary()
        self.nginx = Nginx(tooling.BUILD / "nginx", free_port(), settings.load_cpus)
        self.grpc: dict[str, GrpcSystem] = {}
        url = self.nginx.url
        systems = [
            naive_system(url, settings.sut_cpus),
            vanguard_system(vanguard, url, settings.sut_cpus),
            bare_system(settings.sut_cpus),
            *(gateway_system(v, url, settings.sut_cpus) for v in variants()),
        ]
        keep = {n.strip() for n in os.environ.get("BENCH_SYSTEMS", "").split(",") if n.strip()}
        for system in systems:
            if not keep or system.name in keep:
                self.grpc[system.name] = system
        self.names = [n for n in (UPSTREAM, DIRECT) if not keep or n in keep] + list(self.grpc)
        self.workloads = settings.all_workloads()
        self.lead = self.workloads[0]
        # per workload: the systems measured, and their closed-loop samples
        self.measured: dict[str, list[str]] = {
            w.name: self.names
            if w is self.lead
            else [n for n in self.names if n in WIDE_SYSTEMS or (w.mixed and n == DEPLOYED)]
            for w in self.workloads
        }
        self.closed: dict[str, dict[str, list[Sample]]] = {
            w.name: {n: [] for n in self.measured[w.name]} for w in self.workloads
        }
        self.open: dict[str, list[Sample]] = {}
        self.rss: dict[str, int] = {}
        self.problems: list[str] = []

    # -- lifecycle

    def start(self) -> None:
        self.nginx.start(self.tools["nginx"])
        mixed = next((w for w in self.workloads if w.mixed), None)
        for system in self.grpc.values():
            tooling.say(f"starting {system.name}")
            system.start()
            if mixed is not None and system.name in self.measured[mixed.name]:
                problem = check_mixed(system.target)
                if problem:
                    raise SystemExit(f"bench: {system.name} fails the mixed workload: {problem}")
            for workload in self.workloads:
                if system.name in self.measured[workload.name]:
                    ghz_workload(
                        self.ghz,
                        self.protoset,
                        system.target,
                        self.s.load_cpus,
                        workload,
                        self.s.warmup / len(self.workloads),
                    )

    def stop(self) -> None:
        for system in self.grpc.values():
            system.stop()
        self.nginx.stop()

    # -- one run

    def run(self, name: str, workload: Workload, rps: float | None) -> Sample:
        s = self.s
        agent_url = f"{self.nginx.url}/v1/agents/{AGENT_ID}"
        system = self.grpc.get(name)
        pid = system.pid if system else self.nginx.process.pid if self.nginx.process else 0
        before_cpu = procstat.cpu_seconds(pid)
        before_upstream = self.nginx.requests_served()
        before_busy = procstat.cpu_times()
        seconds = s.open_seconds if rps else s.seconds
        load: Load
        if system is not None:
            load = ghz_workload(
                self.ghz, self.protoset, system.target, s.load_cpus, workload, seconds, rps
            )
        elif name == DIRECT:
            load = rest_load(agent_url, s.sut_cpus, workload.concurrency, seconds, rps)
        else:
            load = wrk(self.tools["wrk"], agent_url, s.sut_cpus, workload.concurrency, seconds)
        busy = procstat.busy_percent(before_busy, procstat.cpu_times())
        upstream = self.nginx.requests_served() - before_upstream - 1  # less stub_status's own
        cpu = procstat.cpu_seconds(pid) - before_cpu
        sample = Sample(
            load.rps, load.calls, load.p50_ms, load.p99_ms, busy=busy, target_rps=rps or 0
        )
        if load.calls:
            if name == DIRECT:  # the client is the system here: its own CPU and memory
                sample.cpu_us_per_call = load.client_cpu_seconds / load.calls * 1e6
                self.rss[name] = max(self.rss.get(name, 0), load.client_peak_rss)
            else:  # a gRPC server, or nginx for the upstream row
                sample.cpu_us_per_call = cpu / load.calls * 1e6
                self.rss[name] = max(self.rss.get(name, 0), procstat.peak_rss_bytes(pid))
            if name != DIRECT:  # the REST client's warm-up calls also reach nginx
                sample.upstream_per_call = upstream / load.calls
        if load.errors:
            sample.problems.append(f"errors {load.errors}")
        if system is not None:
            # ghz counts calls that finished; nginx also saw the few in flight at the end
            # the bare handler asks no upstream; the tracing variants' span exports reach
            # nginx now and then, whichever system is loaded
            slack = 300 / max(load.calls, 1)
            expected = (0.0, slack) if name == BARE else (0.999, 1.0 + slack)
            if not expected[0] <= sample.upstream_per_call <= expected[1]:
                sample.problems.append(f"{upstream} upstream requests for {load.calls} calls")
            problem = check_answer(system.target)
            if problem is None and workload.mixed:
                problem = check_mixed(system.target)
            if problem:
                sample.problems.append(f"answer after the run: {problem}")
        if rps and load.rps < 0.9 * rps:
            sample.problems.append(f"open loop reached {load.rps:.0f}/s of {rps:.0f}/s")
        for problem in sample.problems:
            self.problems.append(f"{name} ({workload.name}): {problem}")
        return sample

    def rounds(self, names: list[str], each: Callable[[str], None]) -> None:
        for i in range(self.s.rounds):
            order = names if i % 2 == 0 else list(reversed(names))
            for name in order:
                each(name)

    def measure(self) -> None:
        s = self.s
        for workload in self.workloads:
            names = self.measured[workload.name]
            tooling.say(
                f"closed loop, {workload.name}: {len(names)} systems x {s.rounds} rounds x "
                f"{s.seconds:g}s"
            )

            def closed(name: str, workload: Workload = workload) -> None:
                sample = self.run(name, workload, None)
                self.closed[workload.name][name].append(sample)
                tooling.say(
                    f"  {name:<30} {sample.rps:9.0f}/s  {sample.cpu_us_per_call:7.1f} µs CPU/call"
                )

            self.rounds(names, closed)
        # the open loop (the first workload): each system at half its own peak; and direct
        # REST once more at the gateway's rates, the baseline of the gateway's added latency
        lead = self.closed[self.lead.name]
        rates = {n: 0.5 * statistics.median(x.rps for x in lead[n]) for n in lead if n != UPSTREAM}
        runs = {n: n for n in rates}
        if DIRECT in rates:
            for gateway in (BASE, DEPLOYED):
                if gateway in rates:
                    rates[DIRECT_AT.format(gateway)] = rates[gateway]
                    runs[DIRECT_AT.format(gateway)] = DIRECT
        self.open = {n: [] for n in rates}
        tooling.say(f"open loop at 50% of peak: {s.rounds} rounds x {s.open_seconds:g}s")

        def open_loop(name: str) -> None:
            sample = self.run(runs[name], self.lead, rates[name])
            self.open[name].append(sample)
            tooling.say(
                f"  {name:<30} {rates[name]:7.0f}/s  p50 {sample.p50_ms:6.2f} ms"
                f"  p99 {sample.p99_ms:6.2f} ms"
            )

        self.rounds(list(rates), open_loop)


# --------------------------------------------------------------------------- the report


def med(samples: list[Sample], attr: str) -> float:
    values = [getattr(x, attr) for x in samples if getattr(x, attr) == getattr(x, attr)]
    return statistics.median(values) if values else float("nan")


def spread(samples: list[Sample]) -> float:
    rates = [x.rps for x in samples]
    return 100 * (max(rates) - min(rates)) / 2 / statistics.median(rates) if rates else 0.0


def busy_median(samples: list[Sample], cpus: list[int]) -> float:
    """Median over the runs of how busy ``cpus`` were, in percent."""
    return statistics.median(sum(x.busy.get(c, 0) for c in cpus) / len(cpus) for x in samples)


def row(bench: Bench, name: str, sut: list[int], load: list[int]) -> str:
    closed = bench.closed[bench.lead.name].get(name, [])
    opened = bench.open.get(name, [])

    cells = [name]
    if closed:
        rss = bench.rss.get(name, 0) / 2**20
        cells += [
            f"{med(closed, 'rps'):,.0f}",
            f"{spread(closed):.0f}%",
            f"{med(closed, 'cpu_us_per_call'):.1f}",
            f"{rss:.0f}",
        ]
    else:
        cells += ["—"] * 4
    if opened:
        cells += [
            f"{med(opened, 'rps'):,.0f}",
            f"{med(opened, 'p50_ms'):.2f}",
            f"{med(opened, 'p99_ms'):.2f}",
        ]
    else:
        cells += ["—"] * 3
    samples = closed or opened
    cells += [f"{busy_median(samples, sut):.0f}", f"{busy_median(samples, load):.0f}"]
    return "| " + " | ".join(cells) + " |"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(bench: Bench, started: float) -> str:
    s = bench.s
    sut, load = cpu_list(s.sut_cpus), cpu_list(s.load_cpus)
    lead = bench.closed[bench.lead.name]
    lines = [
        f"{bench.lead.name}; medians of {s.rounds} rounds ({s.seconds:g}s closed loop, "
        f"{s.open_seconds:g}s open loop); systems on CPU {s.sut_cpus}, nginx and the load "
        f"tools on CPU {s.load_cpus}",
        "",
        "| system | calls/s | ± | CPU µs/call | peak RSS MiB | open-loop calls/s | p50 ms "
        f"| p99 ms | CPU {s.sut_cpus} busy % | CPU {s.load_cpus} busy % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = list(lead)
    for gateway in (BASE, DEPLOYED):
        if DIRECT_AT.format(gateway) in bench.open and DIRECT in names:
            names.insert(names.index(DIRECT) + 1, DIRECT_AT.format(gateway))
    lines += [row(bench, name, sut, load) for name in names]
    for workload in bench.workloads[1:]:
        closed = bench.closed[workload.name]
        lines += [
            "",
            f"{workload.name} (closed loop)",
            "",
            "| system | calls/s | ± | CPU µs/call | / naive passthrough | CPU "
            f"{s.sut_cpus} busy % | CPU {s.load_cpus} busy % |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, samples in closed.items():
            ratio = med(samples, "rps") / med(closed[NAIVE], "rps") if NAIVE in closed else math.nan
            lines.append(
                f"| {name} | {med(samples, 'rps'):,.0f} | {spread(samples):.0f}% "
                f"| {med(samples, 'cpu_us_per_call'):.1f} | {ratio:.2f} "
                f"| {busy_median(samples, sut):.0f} | {busy_median(samples, load):.0f} |"
            )
    lines.append("")
    lines += headline(bench)
    load_bound = [
        f"{name} ({workload})"
        for workload, systems in bench.closed.items()
        for name, samples in systems.items()
        if name != UPSTREAM and busy_median(samples, load) >= 90
    ]
    if load_bound:
        lines.append(
            f"CPU {s.load_cpus} (nginx + load tool) was >= 90% busy for: {', '.join(load_bound)}: "
            "their calls/s may be held back by the load side (a lower bound)"
        )
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"load average after: {loads}; took {time.monotonic() - started:.0f}s")
    return "\n".join(lines)


def headline(bench: Bench) -> list[str]:
    """The ratios the targets are stated in, each with its verdict."""
    lines: list[str] = []
    lead = bench.closed[bench.lead.name]
    rate = {n: med(x, "rps") for n, x in lead.items()}
    cpu = {n: med(x, "cpu_us_per_call") for n, x in lead.items()}
    if BASE in rate and UPSTREAM in rate:
        ratio = rate[UPSTREAM] / rate[BASE]
        ok = "ok" if ratio >= 5 else "TOO LOW: the upstream may be a bottleneck"
        lines.append(f"upstream capacity / gateway: {ratio:.1f}x (needs >= 5x: {ok})")
    for workload in bench.workloads:
        closed = bench.closed[workload.name]
        if DEPLOYED in closed and NAIVE in closed:
            ratio = med(closed[DEPLOYED], "rps") / med(closed[NAIVE], "rps")
            lines.append(
                f"as deployed / naive passthrough, {workload.name}: {ratio:.2f} "
                f"(target >= 1.5: {verdict(ratio >= 1.5)})"
            )
        if BASE in closed and NAIVE in closed:
            ratio = med(closed[BASE], "rps") / med(closed[NAIVE], "rps")
            lines.append(f"gateway (defaults) / naive passthrough, {workload.name}: {ratio:.2f}")
    if DEPLOYED in rate and VANGUARD in rate:
        ratio = rate[DEPLOYED] / rate[VANGUARD]
        lines.append(
            f"as deployed / vanguard-go: {ratio:.2f} (target >= 0.6: {verdict(ratio >= 0.6)})"
        )
    if DEPLOYED in cpu and BARE in cpu:
        ratio = cpu[DEPLOYED] / cpu[BARE]
        lines.append(
            f"as deployed CPU per call / bare grpc.aio handler: {ratio:.2f} "
            f"(target <= 2: {verdict(ratio <= 2)})"
        )
    for variant, target in (("gateway (tracing 5%)", 0.05), ("gateway (limits on)", 0.03)):
        if variant in rate and BASE in rate:
            cost = 1 - rate[variant] / rate[BASE]
            lines.append(
                f"{variant}: costs {100 * cost:.1f}% of the gateway's calls/s "
                f"(target <= {100 * target:.0f}%: {verdict(cost <= target)})"
            )
    for gateway in (BASE, DEPLOYED):
        baseline = DIRECT_AT.format(gateway)
        if baseline in bench.open and gateway in bench.open:
            p50 = med(bench.open[gateway], "p50_ms") - med(bench.open[baseline], "p50_ms")
            p99 = med(bench.open[gateway], "p99_ms") - med(bench.open[baseline], "p99_ms")
            lines.append(
                f"{gateway}: latency added over direct REST at the same rate (50% of its "
                f"peak): p50 {p50:+.2f} ms, p99 {p99:+.2f} ms (targets <= 0.5 / <= 3 ms: "
                f"{verdict(p50 <= 0.5)} / {verdict(p99 <= 3)})"
            )
    return lines


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), {int(memory) / 2**20:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"load average before: {loads}"
    )


def main() -> int:
    started = time.monotonic()
    settings = Settings()
    # keep this orchestrator off the systems' CPUs
    os.sched_setaffinity(0, set(cpu_list(settings.load_cpus)))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = f"bench of {when} on {machine()}"
    bench = Bench(settings)
    try:
        bench.start()
        bench.measure()
    finally:
        bench.stop()
    table = report(bench, started)
    print(header)
    print(table)
    out = tooling.BUILD / "results.json"
    out.write_text(
        json.dumps(
            {
                "when": when,
                "machine": header,
                "settings": asdict(settings),
                "closed": {
                    w: {n: [asdict(x) for x in v] for n, v in systems.items()}
                    for w, systems in bench.closed.items()
                },
                "open": {n: [asdict(x) for x in v] for n, v in bench.open.items()},
                "peak_rss": bench.rss,
                "problems": bench.problems,
                "table": table,
            },
            indent=1,
        )
    )
    if bench.problems:
        print("\nPROBLEMS (these figures do not count):", file=sys.stderr)
        for problem in bench.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
