"""Where the gateway's time goes: py-spy on a gateway under ghz load, summarised.

    .venv/bin/python bench/profile_gateway.py [SECONDS]

Starts the benchmark's nginx upstream (load CPU) and the gateway with its defaults (system
CPU), drives GetAgent with ghz at concurrency 50 (closed loop), and records the gateway
with ``py-spy record --rate 200 --format raw --threads`` for SECONDS (default 10;
BENCH_PROFILE_NATIVE=1 adds native frames).
The folded stacks go to build/bench/profile/gateway.folded. Printed: the CPU seconds of
each thread over the recording, and for the event-loop thread the top functions by own
time (the leaf of each sample), own time per source area (gateway, grpc, aiohttp,
protobuf, asyncio, ...) and the top functions by inclusive time. py-spy 0.4.3 is
installed into the virtualenv when missing.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lib import procstat, tooling
from lib.nginx_upstream import Nginx
from lib.systems import Variant, free_port, gateway_system, request_file
from run import Settings, cpu_list, variants

PY_SPY_VERSION = "0.4.3"
OUT = tooling.BUILD / "profile"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")

AREAS = (
    ("gateway/", "gateway"),
    ("grpc/", "grpc (Python + Cython)"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp (yarl, multidict)"),
    ("multidict/", "aiohttp (yarl, multidict)"),
    ("google/protobuf/", "protobuf"),
    ("asyncio/", "asyncio"),
    ("opentelemetry/", "opentelemetry"),
    ("logging/", "logging"),
)


# Stages of a call, by the first marker found in a sample's stack (names of today's hot
# path: update them when it changes). Samples outside the handler are the event loop's.
STAGES = (
    ("UnaryClient.send", "handler: upstream HTTP call (the pool, socket writes)"),
    ("decode_answer", "handler: answer decoding (JSON -> message)"),
    ("Handlers._unary", "handler: the rest (metadata, request id, route, path)"),
)


def stage(stack: str, leaf: str) -> str:
    for marker, name in STAGES:
        if marker in stack:
            return name
    if leaf.startswith("Handle._run "):
        return "loop: native callbacks (grpc's Cython server; py-spy sees Handle._run)"
    if leaf.split(" (")[0].endswith(".select"):
        return "loop: waiting in epoll"
    return "loop: the rest (sockets, aiohttp protocol, scheduling)"


def py_spy() -> Path:
    binary = tooling.PYTHON.parent / "py-spy"
    if not binary.exists():
        tooling.say(f"pip install py-spy=={PY_SPY_VERSION}")
        subprocess.check_call(
            [str(tooling.PYTHON), "-m", "pip", "install", "-q", f"py-spy=={PY_SPY_VERSION}"]
        )
    return binary


def frame_name(frame: str) -> tuple[str, str]:
    """(``function (file)`` without the line number, the file)."""
    match = FRAME.match(frame)
    if not match:
        return frame, ""
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})", path


def area(path: str) -> str:
    for prefix, name in AREAS:
        if prefix in path:
            return name
    return "other: " + (path.split("/")[0] if path else "native / unknown")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by ``name (tid)``, from /proc/PID/task."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{name} ({task.name})"] = (int(fields[11]) + int(fields[12])) / procstat.TICKS
    return out


def summarise(folded: Path, cpu: dict[str, float], seconds: float, top: int = 20) -> str:
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    loop_samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *raw = stack.split(";")
        threads[thread] += count
        if not thread.endswith("MainThread"):
            continue  # the event loop runs in the main thread; the rest is grpc's poller
        frames = [frame_name(f) for f in raw]
        if not frames:
            continue
        loop_samples += count
        leaf, leaf_path = frames[-1]
        own[leaf] += count
        areas[area(leaf_path)] += count
        stages[stage(stack, leaf)] += count
        for name in {f[0] for f in frames}:
            inclusive[name] += count
    total = sum(threads.values())
    out = [f"{total} samples over {seconds:g}s; by thread (a thread blocked in C counts as busy):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common()]
    out += ["", "CPU seconds per thread over the recording (/proc/PID/task):"]
    out += [f"  {t:6.2f}s  {name}" for name, t in sorted(cpu.items(), key=lambda x: -x[1]) if t]
    out += ["", "event-loop thread, by stage of a call:"]
    out += [f"  {100 * n / loop_samples:5.1f}%  {name}" for name, n in stages.most_common()]
    out += ["", "event-loop thread, own time (the function running when sampled):"]
    out += [f"  {100 * n / loop_samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    out += ["", "event-loop thread, own time by area:"]
    out += [f"  {100 * n / loop_samples:5.1f}%  {name}" for name, n in areas.most_common(12)]
    out += ["", "event-loop thread, inclusive time (the function and what it called):"]
    out += [f"  {100 * n / loop_samples:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 10.0
    settings = Settings()
    os.sched_setaffinity(0, set(cpu_list(settings.load_cpus)))
    spy = py_spy()
    tools = tooling.apt_tools()
    ghz_binary = tooling.go_tool(tooling.GHZ)
    protoset = tooling.descriptor_set()
    OUT.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(tooling.BUILD / "nginx", free_port(), settings.load_cpus)
    nginx.start(tools["nginx"])
    # BENCH_PROFILE_VARIANT names one of bench/run.py's gateway variants (default: "gateway")
    wanted = os.environ.get("BENCH_PROFILE_VARIANT", "gateway")
    variant = next((v for v in variants() if v.name == wanted), Variant(wanted))
    gateway = gateway_system(variant, nginx.url, settings.sut_cpus)
    load: subprocess.Popen[bytes] | None = None
    try:
        gateway.start()
        load = subprocess.Popen(
            [
                "taskset",
                "-c",
                settings.load_cpus,
                str(ghz_binary),
                "--insecure",
                "--protoset",
                str(protoset),
                "--call",
                "gagiteck.v1.AgentService/GetAgent",
                "--binary-file",
                str(request_file()),
                "--disable-template-functions",
                "--disable-template-data",
                "-c",
                str(settings.concurrency),
                "-z",
                f"{seconds + 6:g}s",
                "--cpus",
                "1",
                gateway.target,
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(3)  # warm
        folded = OUT / "gateway.folded"
        argv_spy = [
            str(spy),
            "record",
            "--pid",
            str(gateway.pid),
            "--duration",
            f"{seconds:g}",
            "--rate",
            "200",
            "--format",
            "raw",
            "--threads",
            "--output",
            str(folded),
        ]
        # py-spy pauses the process for each sample (consistent stacks; --nonblocking
        # tears about a quarter of them); --native adds Cython/C frames, unnamed for grpc
        if os.environ.get("BENCH_PROFILE_NATIVE"):
            argv_spy.append("--native")
        before = thread_cpu(gateway.pid)
        subprocess.check_call(argv_spy, stdout=subprocess.DEVNULL)
        after = thread_cpu(gateway.pid)
        cpu = {name: after[name] - before.get(name, 0.0) for name in after}
        load.wait(timeout=seconds + 30)
    finally:
        if load is not None and load.poll() is None:
            load.terminate()
        gateway.stop()
        nginx.stop()
    summary = summarise(folded, cpu, seconds)
    (OUT / "summary.txt").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
