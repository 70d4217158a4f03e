"""Gateways side by side: revisions or settings, interleaved under the same ghz load.

    .venv/bin/python bench/compare.py NAME=REV[,ENV=VALUE...] NAME=REV[,...] ...

Each argument is one gateway process: ``REV`` is a git revision (``WORK`` for the working
tree), checked out into build/bench/compare/<REV> when it is not the working tree, and
the ``ENV=VALUE`` pairs are extra environment (``{upstream}`` stands for the nginx URL,
e.g. an OTLP endpoint). Example, tracing at 5% against no tracing on the working tree:

    .venv/bin/python bench/compare.py off=WORK \\
        "t5=WORK,OTEL_TRACES_EXPORTER=otlp,OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf,\\
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={upstream}/v1/traces,\\
    OTEL_TRACES_SAMPLER=parentbased_traceidratio,OTEL_TRACES_SAMPLER_ARG=0.05"

This is the method behind the "before → after" figures in docs/BENCHMARKS.md: every
gateway on CPU 0 in turn, nginx and ghz (50 in flight) on CPU 1, BENCH_ROUNDS (4) closed
loops of BENCH_SECONDS (4) in the order A B … then reversed. Printed per gateway: median
calls/s, CPU µs per call (process tree), the CPU µs per call of each thread kind (the
event loop, gRPC's poller — both named ``python`` — and gRPC's own threads), and with
BENCH_OPEN=0.5 the open-loop p50/p99 of each round at that share of the gateway's peak.
BENCH_GC_PAUSES=1 runs each gateway under a ``gc.callbacks`` probe and prints the
collections per generation with their longest pauses. Each gateway's output goes to
build/bench/logs/NAME.log.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from lib import procstat, tooling
from lib.nginx_upstream import Nginx
from lib.systems import GrpcSystem, check_answer, free_port, ghz

WORKTREES = tooling.BUILD / "compare"

GC_PROBE = textwrap.dedent(
    """
    import gc, os, runpy, sys, time
    sys.path.insert(0, os.getcwd())
    pauses = {0: [], 1: [], 2: []}
    started = [0.0]

    def probe(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    def report():
        with open(os.environ["BENCH_GC_REPORT"], "w") as out:
            for generation, seen in pauses.items():
                longest = sorted(seen)[-5:]
                out.write(f"gen{generation}: {len(seen)} collections, longest (ms) "
                          f"{[round(p * 1000, 2) for p in longest]}\\n")

    gc.callbacks.append(probe)
    # what "python -m gateway serve" runs, in whichever layout the revision has
    sys.argv = ["gagiteck-gateway", "serve"]
    try:
        runpy.run_module("gateway", run_name="__main__", alter_sys=True)
    except SystemExit:  # SIGTERM drains the gateway and ends up here
        pass
    report()
    """
)


def checkout(rev: str) -> Path:
    if rev == "WORK":
        return tooling.ROOT
    # Named by the commit, not by the name given: "HEAD" or a branch moves, and a worktree
    # kept under its name would go on measuring the commit it once was.
    commit = subprocess.check_output(
        ["git", "rev-parse", "--short=12", f"{rev}^{{commit}}"], cwd=tooling.ROOT, text=True
    ).strip()
    path = WORKTREES / commit
    if not path.exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        subprocess.check_call(
            ["git", "worktree", "add", "--detach", "-f", str(path), rev], cwd=tooling.ROOT
        )
    return path


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread kind: the main (event-loop) thread, other Python threads, gRPC's."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = name if name != "python" else ("event loop" if tid == str(pid) else "python")
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    seconds = float(os.environ.get("BENCH_SECONDS", "4"))
    open_share = float(os.environ.get("BENCH_OPEN", "0"))
    gc_pauses = os.environ.get("BENCH_GC_PAUSES") == "1"
    specs = sys.argv[1:]
    if not specs or any("=" not in spec for spec in specs):
        raise SystemExit(__doc__)
    ghz_binary = tooling.go_tool(tooling.GHZ)
    protoset = tooling.descriptor_set()
    nginx = Nginx(tooling.BUILD / "nginx", free_port(), "1")
    nginx.start(tooling.apt_tools()["nginx"])
    gateways: dict[str, GrpcSystem] = {}
    try:
        for spec in specs:
            name, _, rest = spec.partition("=")
            rev, *pairs = rest.split(",")
            port = free_port()
            env = {
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "GATEWAY_UPSTREAM_URL": nginx.url,
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_ADMIN_LISTEN": "off",
                "GATEWAY_SHUTDOWN_DELAY": "0",
                "BENCH_GC_REPORT": str(tooling.BUILD / f"gc-{name}.txt"),
            }
            for pair in pairs:
                key, _, value = pair.partition("=")
                env[key] = value.replace("{upstream}", nginx.url)
            program = ["-c", GC_PROBE] if gc_pauses else ["-m", "gateway", "serve"]
            gateways[name] = GrpcSystem(
                name,
                [str(tooling.PYTHON), *program],
                "0",
                env=env,
                port=port,
                cwd=checkout(rev),
            )
            gateways[name].start()
        for gateway in gateways.values():
            ghz(ghz_binary, protoset, gateway.target, "1", 50, 3)  # warm-up
        closed: dict[str, list[tuple[float, float]]] = {name: [] for name in gateways}
        threads: dict[str, dict[str, float]] = {name: {} for name in gateways}
        order = list(gateways)
        for number in range(rounds):
            for name in order if number % 2 == 0 else order[::-1]:
                pid, target = gateways[name].pid, gateways[name].target
                before, before_threads = procstat.cpu_seconds(pid), thread_cpu(pid)
                load = ghz(ghz_binary, protoset, target, "1", 50, seconds)
                used = procstat.cpu_seconds(pid) - before
                if load.errors or check_answer(target) is not None:
                    raise SystemExit(f"bench: {name} failed: {load.errors}")
                closed[name].append((load.rps, used / load.calls * 1e6))
                for kind, total in thread_cpu(pid).items():
                    share = (total - before_threads.get(kind, 0.0)) / load.calls * 1e6 / rounds
                    threads[name][kind] = threads[name].get(kind, 0.0) + share
                tooling.say(f"  {name:16s} {load.rps:7.0f}/s  {used / load.calls * 1e6:6.1f} µs")
        latency: dict[str, list[tuple[float, float]]] = {name: [] for name in gateways}
        for number in range(rounds if open_share else 0):
            for name in order if number % 2 == 0 else order[::-1]:
                rate = statistics.median(r for r, _ in closed[name]) * open_share
                load = ghz(ghz_binary, protoset, gateways[name].target, "1", 50, seconds, rps=rate)
                latency[name].append((load.p50_ms, load.p99_ms))
        print(
            "\n| gateway | calls/s | CPU µs/call | by thread (µs/call) | open-loop p50 / p99 ms |"
        )
        print("|---|---|---|---|---|")
        for name, runs in closed.items():
            by_thread = ", ".join(
                f"{kind} {cpu:.1f}" for kind, cpu in sorted(threads[name].items()) if cpu >= 0.5
            )
            rounds_text = "; ".join(f"{p50:.2f} / {p99:.2f}" for p50, p99 in latency[name])
            print(
                f"| {name} | {statistics.median(r for r, _ in runs):,.0f} "
                f"| {statistics.median(c for _, c in runs):.1f} | {by_thread} "
                f"| {rounds_text or '—'} |"
            )
    finally:
        for gateway in gateways.values():
            gateway.stop()  # SIGTERM: a GC probe writes its report as the gateway drains
        nginx.stop()
    if gc_pauses:
        for name in gateways:
            report = tooling.BUILD / f"gc-{name}.txt"
            if report.exists():
                print(f"\n{name}:\n{report.read_text()}", end="")


if __name__ == "__main__":
    main()
