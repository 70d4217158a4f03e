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

Settings (environment): BENCH_ROUNDS (4), BENCH_SECONDS (5), BENCH_OPEN_SECONDS (5),
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
    GrpcSystem,
    Load,
    Variant,
    check_answer,
    cpu_list,
    free_port,
    gateway_system,
    ghz,
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
GATEWAY_VARIANTS: list[Variant] = [
    Variant("gateway"),
    Variant("gateway (tracing 5%)", {**_TRACING, "OTEL_TRACES_SAMPLER_ARG": "0.05"}),
    Variant("gateway (tracing 100%)", {**_TRACING, "OTEL_TRACES_SAMPLER_ARG": "1.0"}),
    Variant(
        "gateway (limits on)",
        {
            "GATEWAY_RATE_LIMIT_RPS": "1000000",
            "GATEWAY_CALLER_RATE_LIMIT_RPS": "1000000",
        },
    ),
]
# -----------------------------------------------------------------------------------------

UPSTREAM = "upstream (nginx, wrk)"
DIRECT = "direct REST (aiohttp)"
BASE = "gateway"
DIRECT_AT_BASE = "direct REST at gateway's rate"


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Settings:
    rounds: int = int(env_float("BENCH_ROUNDS", 4))
    seconds: float = env_float("BENCH_SECONDS", 5)
    open_seconds: float = env_float("BENCH_OPEN_SECONDS", 5)
    concurrency: int = int(env_float("BENCH_CONCURRENCY", 50))
    warmup: float = env_float("BENCH_WARMUP", 6)
    sut_cpus: str = os.environ.get("BENCH_SUT_CPUS", "0")
    load_cpus: str = os.environ.get("BENCH_LOAD_CPUS", "1")


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
            *(gateway_system(v, url, settings.sut_cpus) for v in variants()),
        ]
        keep = {n.strip() for n in os.environ.get("BENCH_SYSTEMS", "").split(",") if n.strip()}
        for system in systems:
            if not keep or system.name in keep:
                self.grpc[system.name] = system
        self.names = [n for n in (UPSTREAM, DIRECT) if not keep or n in keep] + list(self.grpc)
        self.closed: dict[str, list[Sample]] = {n: [] for n in self.names}
        self.open: dict[str, list[Sample]] = {n: [] for n in self.names if n != UPSTREAM}
        self.rss: dict[str, int] = {}
        self.problems: list[str] = []

    # -- lifecycle

    def start(self) -> None:
        self.nginx.start(self.tools["nginx"])
        for system in self.grpc.values():
            tooling.say(f"starting {system.name}")
            system.start()
            ghz(
                self.ghz,
                self.protoset,
                system.target,
                self.s.load_cpus,
                self.s.concurrency,
                self.s.warmup,
            )

    def stop(self) -> None:
        for system in self.grpc.values():
            system.stop()
        self.nginx.stop()

    # -- one run

    def run(self, name: str, rps: float | None) -> Sample:
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
            load = ghz(
                self.ghz, self.protoset, system.target, s.load_cpus, s.concurrency, seconds, rps
            )
        elif name == DIRECT:
            load = rest_load(agent_url, s.sut_cpus, s.concurrency, seconds, rps)
        else:
            load = wrk(self.tools["wrk"], agent_url, s.sut_cpus, s.concurrency, seconds)
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
                self.rss[name] = procstat.peak_rss_bytes(pid)
            if name != DIRECT:  # the REST client's warm-up calls also reach nginx
                sample.upstream_per_call = upstream / load.calls
        if load.errors:
            sample.problems.append(f"errors {load.errors}")
        if system is not None:
            # ghz counts calls that finished; nginx also saw the few in flight at the end
            if not 0.999 <= sample.upstream_per_call <= 1.0 + 200 / max(load.calls, 1):
                sample.problems.append(f"{upstream} upstream requests for {load.calls} calls")
            problem = check_answer(system.target)
            if problem:
                sample.problems.append(f"answer after the run: {problem}")
        if rps and load.rps < 0.9 * rps:
            sample.problems.append(f"open loop reached {load.rps:.0f}/s of {rps:.0f}/s")
        for problem in sample.problems:
            self.problems.append(f"{name}: {problem}")
        return sample

    def rounds(self, names: list[str], each: Callable[[str], None]) -> None:
        for i in range(self.s.rounds):
            order = names if i % 2 == 0 else list(reversed(names))
            for name in order:
                each(name)

    def measure(self) -> None:
        s = self.s
        tooling.say(
            f"closed loop: {len(self.names)} systems x {s.rounds} rounds x {s.seconds:g}s "
            f"at concurrency {s.concurrency}"
        )

        def closed(name: str) -> None:
            sample = self.run(name, None)
            self.closed[name].append(sample)
            tooling.say(
                f"  {name:<30} {sample.rps:9.0f}/s  {sample.cpu_us_per_call:7.1f} µs CPU/call"
            )

        self.rounds(self.names, closed)
        # the open loop: each system at half its own peak; and direct REST once more at the
        # gateway's rate, the baseline of the gateway's added latency
        rates = {
            n: 0.5 * statistics.median(x.rps for x in self.closed[n])
            for n in self.names
            if n != UPSTREAM
        }
        runs = {n: n for n in rates}
        if DIRECT in rates and BASE in rates:
            rates[DIRECT_AT_BASE] = rates[BASE]
            runs[DIRECT_AT_BASE] = DIRECT
        self.open = {n: [] for n in rates}
        tooling.say(f"open loop at 50% of peak: {s.rounds} rounds x {s.open_seconds:g}s")

        def open_loop(name: str) -> None:
            sample = self.run(runs[name], rates[name])
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
    closed = bench.closed.get(name, [])
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


def report(bench: Bench, started: float) -> str:
    s = bench.s
    sut, load = cpu_list(s.sut_cpus), cpu_list(s.load_cpus)
    lines = [
        f"GetAgent through each system; concurrency {s.concurrency}; medians of {s.rounds} "
        f"rounds ({s.seconds:g}s closed loop, {s.open_seconds:g}s open loop); systems on CPU "
        f"{s.sut_cpus}, nginx and the load tools on CPU {s.load_cpus}",
        "",
        "| system | calls/s | ± | CPU µs/call | peak RSS MiB | open-loop calls/s | p50 ms "
        f"| p99 ms | CPU {s.sut_cpus} busy % | CPU {s.load_cpus} busy % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = list(bench.names)
    if DIRECT_AT_BASE in bench.open:
        names.insert(names.index(DIRECT) + 1, DIRECT_AT_BASE)
    lines += [row(bench, name, sut, load) for name in names]
    lines.append("")
    rate = {n: med(bench.closed[n], "rps") for n in bench.names}
    gateways = [n for n in bench.grpc if n.startswith("gateway")]
    if BASE in rate:
        if UPSTREAM in rate:
            ratio = rate[UPSTREAM] / rate[BASE]
            verdict = "ok" if ratio >= 5 else "TOO LOW: the upstream may be a bottleneck"
            lines.append(f"upstream capacity / gateway: {ratio:.1f}x (needs >= 5x: {verdict})")
        for other in ("naive passthrough", "vanguard-go"):
            if other in rate:
                lines.append(f"gateway / {other} calls/s: {rate[BASE] / rate[other]:.2f}")
        for variant in gateways:
            if variant != BASE:
                lines.append(f"{variant} / gateway calls/s: {rate[variant] / rate[BASE]:.2f}")
        if DIRECT_AT_BASE in bench.open:
            p50 = med(bench.open[BASE], "p50_ms") - med(bench.open[DIRECT_AT_BASE], "p50_ms")
            p99 = med(bench.open[BASE], "p99_ms") - med(bench.open[DIRECT_AT_BASE], "p99_ms")
            lines.append(
                "gateway latency added over direct REST at the same rate (50% of the "
                f"gateway's peak): p50 {p50:+.2f} ms, p99 {p99:+.2f} ms"
            )
    load_bound = [
        n for n in bench.names if n != UPSTREAM and busy_median(bench.closed[n], load) >= 90
    ]
    if load_bound:
        lines.append(
            f"CPU {s.load_cpus} (nginx + load tool) was >= 90% busy for: {', '.join(load_bound)}: "
            "their calls/s may be held back by the load side (a lower bound)"
        )
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"load average after: {loads}; took {time.monotonic() - started:.0f}s")
    return "\n".join(lines)


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
                "closed": {n: [asdict(x) for x in v] for n, v in bench.closed.items()},
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
