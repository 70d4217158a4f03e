"""Streaming figures: added time to first event, events/s relayed, memory per idle stream.

    .venv/bin/python bench/stream_bench.py        (make bench-streaming)

Everything runs on 127.0.0.1: bench/lib/sse_upstream.py (a fixed-cost SSE server), the
gateway (``python -m gateway serve``, pinned to CPU 0), and the clients on CPU 1.

1. **Added time to first event.** One stream at a time, in turn direct (an aiohttp
   client reading the upstream's SSE until the first event), through the gateway (a
   grpc.aio client until the first message) and from a bare grpc.aio handler that holds
   the events ready (bench/lib/bare_handler.py: the gRPC hop alone), ``TTFE_ROUNDS`` of
   each; the medians and their differences.
2. **Events/s relayed, and the added time to first event, under load.** For each N of
   ``STREAM_LOADS`` (100 and 1,000): ghz calls StreamAgentRun with N calls in flight
   (over N/100 connections, at least 4) for ``EVENTS_SECONDS``; each call relays
   ``EVENTS_PER_RUN`` + 3 events. Events/s = completed calls * events per call /
   seconds; the gateway's CPU time per event is read from /proc. Meanwhile probes
   measure the time to first event, direct and through the gateway in turn, as in 1: the
   added time to first event with N streams relaying.
3. **Memory per idle stream.** ``IDLE_STREAMS`` streams that stay open (the upstream sends
   the first event, then only heartbeats); the gateway's resident set size before and
   after they are all open, divided by their number.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from lib.procstat import cpu_seconds
from lib.systems import free_port
from lib.tooling import BUILD, GHZ, PYTHON, ROOT, descriptor_set, go_tool, say

TTFE_ROUNDS = int(os.environ.get("TTFE_ROUNDS", "300"))
EVENTS_SECONDS = float(os.environ.get("EVENTS_SECONDS", "10"))
EVENTS_PER_RUN = int(os.environ.get("EVENTS_PER_RUN", "200"))
IDLE_STREAMS = int(os.environ.get("IDLE_STREAMS", "1000"))
STREAM_LOADS = [int(n) for n in os.environ.get("STREAM_LOADS", "100,1000").split(",")]
METHOD = "gagiteck.v1.AgentService/StreamAgentRun"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start(argv: list[str], cpus: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", cpus, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"bench: {url} did not come up")


async def wait_grpc(target: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        for _ in range(200):
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
    raise SystemExit(f"bench: the gateway at {target} did not come up")


async def first_event_direct(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.post(f"{url}/v1/agents/fast-10/run", json={"message": "hi"}) as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            if b"\n\n" in buffer:
                elapsed = time.perf_counter() - started
                break
        await response.read()
    return elapsed


async def first_event_gateway(stub: Any, request: Any) -> float:
    started = time.perf_counter()
    call = stub.StreamAgentRun(request, timeout=10)
    await call.read()
    elapsed = time.perf_counter() - started
    while await call.read() is not grpc.aio.EOF:
        pass
    return elapsed


async def time_to_first_event(upstream: str, target: str, bare: str) -> dict[str, float]:
    from gagiteck.v1 import agent_pb2, agent_pb2_grpc

    direct: list[float] = []
    relayed: list[float] = []
    floor: list[float] = []
    request = agent_pb2.StreamAgentRunRequest(agent_id="fast-10", message="hi")
    async with (
        aiohttp.ClientSession() as session,
        grpc.aio.insecure_channel(target) as channel,
        grpc.aio.insecure_channel(bare) as bare_channel,
    ):
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        bare_stub = agent_pb2_grpc.AgentServiceStub(bare_channel)
        for _ in range(20):  # warm every path (connections, caches)
            await first_event_direct(session, upstream)
            await first_event_gateway(stub, request)
            await first_event_gateway(bare_stub, request)
        for _ in range(TTFE_ROUNDS):
            direct.append(await first_event_direct(session, upstream))
            relayed.append(await first_event_gateway(stub, request))
            floor.append(await first_event_gateway(bare_stub, request))
    d, r, b = statistics.median(direct), statistics.median(relayed), statistics.median(floor)
    return {
        "direct_ms": d * 1e3,
        "gateway_ms": r * 1e3,
        "added_ms": (r - d) * 1e3,
        "bare_ms": b * 1e3,
        "added_over_bare_ms": (r - b) * 1e3,
    }


async def events_per_second(
    upstream: str, target: str, gateway_pid: int, streams: int, probes: bool = True
) -> dict[str, float]:
    from gagiteck.v1 import agent_pb2, agent_pb2_grpc

    ghz = go_tool(GHZ)
    protoset = descriptor_set()
    request = json.dumps({"agent_id": f"fast-{EVENTS_PER_RUN}", "message": "hi"})
    before = cpu_seconds(gateway_pid)
    process = await asyncio.create_subprocess_exec(
        *[
            "taskset",
            "-c",
            "1",
            str(ghz),
            "--insecure",
            "--protoset",
            str(protoset),
            "--call",
            METHOD,
            "-d",
            request,
            "-c",
            str(streams),
            "-z",
            f"{EVENTS_SECONDS:g}s",
            "--duration-stop",
            "wait",
            "--connections",
            str(max(4, streams // 100)),
            "-O",
            "json",
            target,
        ],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    finished = asyncio.ensure_future(process.communicate())
    # probes of the time to first event while the streams relay
    direct: list[float] = []
    relayed: list[float] = []
    probe = agent_pb2.StreamAgentRunRequest(agent_id="fast-10", message="hi")
    async with aiohttp.ClientSession() as session, grpc.aio.insecure_channel(target) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        await asyncio.sleep(1.0)  # let the load reach its level
        while probes and not finished.done():
            direct.append(await first_event_direct(session, upstream))
            relayed.append(await first_event_gateway(stub, probe))
            await asyncio.sleep(0.02)
    out, err = (part.decode() for part in await finished)  # after the probes, or at once
    cpu = cpu_seconds(gateway_pid) - before
    report = json.loads(out)
    statuses = report.get("statusCodeDistribution") or {}
    ok = statuses.get("OK", 0)
    if ok == 0 or set(statuses) != {"OK"}:
        raise SystemExit(f"bench: streaming calls failed: {statuses} {err[-500:]}")
    seconds = report["total"] / 1e9
    events = ok * (EVENTS_PER_RUN + 3)
    d = statistics.median(direct) if direct else float("nan")
    r = statistics.median(relayed) if relayed else float("nan")
    return {
        "streams": streams,
        "calls": ok,
        "events_per_s": events / seconds,
        "cpu_us_per_event": cpu / events * 1e6,
        "probes": len(direct),
        "direct_ms": d * 1e3,
        "gateway_ms": r * 1e3,
        "added_ms": (r - d) * 1e3,
    }


async def idle_stream_memory(target: str, upstream: str, gateway_pid: int) -> dict[str, float]:
    from gagiteck.v1 import agent_pb2, agent_pb2_grpc

    request = agent_pb2.StreamAgentRunRequest(agent_id="idle", message="hi")
    channels = [grpc.aio.insecure_channel(target) for _ in range(10)]
    calls: list[Any] = []
    try:
        for channel in channels:  # warm-up: one stream per channel, then closed
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.StreamAgentRun(request, timeout=120)
            await call.read()
            call.cancel()
        await asyncio.sleep(1.0)
        baseline = rss_bytes(gateway_pid)
        for i in range(IDLE_STREAMS):
            stub = agent_pb2_grpc.AgentServiceStub(channels[i % len(channels)])
            calls.append(stub.StreamAgentRun(request, timeout=120))
        await asyncio.gather(*(call.read() for call in calls))
        async with aiohttp.ClientSession() as session, session.get(f"{upstream}/stats") as got:
            open_upstream = (await got.json())["open"]
        await asyncio.sleep(1.0)
        loaded = rss_bytes(gateway_pid)
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
    return {
        "streams": IDLE_STREAMS,
        "open_upstream": open_upstream,
        "rss_before_mib": baseline / 2**20,
        "rss_after_mib": loaded / 2**20,
        "kib_per_stream": (loaded - baseline) / IDLE_STREAMS / 1024,
    }


async def main() -> int:
    upstream_port, grpc_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    target = f"127.0.0.1:{grpc_port}"
    sse = start([str(PYTHON), "bench/lib/sse_upstream.py", str(upstream_port)], "1")
    # the floor: a bare grpc.aio handler yielding the same events, built once (CPU 0 too;
    # it idles while the gateway is measured, and the other way round)
    bare = await asyncio.create_subprocess_exec(
        *["taskset", "-c", "0", str(PYTHON), "bench/lib/bare_handler.py"],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert bare.stdout is not None
    bare_target = f"127.0.0.1:{(await bare.stdout.readline()).split()[1].decode()}"
    gateway = start(
        [str(PYTHON), "-m", "gateway", "serve"],
        "0",
        {
            "GATEWAY_LISTEN": target,
            "GATEWAY_UPSTREAM_URL": upstream,
            "GATEWAY_ADMIN_LISTEN": "off",
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_STREAM_CONCURRENCY": str(max(IDLE_STREAMS, *STREAM_LOADS) + 100),
            # one caller opens every stream here: its own cap (32 by default) is lifted
            "GATEWAY_CALLER_MAX_STREAMS": "0",
        },
    )
    try:
        await wait_http(f"{upstream}/stats")
        await wait_grpc(target)
        say(f"time to first event at rest: {TTFE_ROUNDS} probes each way")
        ttfe = await time_to_first_event(upstream, target, bare_target)
        events, floor = [], []
        for n in STREAM_LOADS:
            say(f"{n} concurrent streams for {EVENTS_SECONDS:g}s, probes meanwhile")
            events.append(await events_per_second(upstream, target, gateway.pid, n))
            say(f"{n} concurrent streams of the bare grpc.aio handler")
            floor.append(await events_per_second(upstream, bare_target, bare.pid, n, False))
        say(f"{IDLE_STREAMS} idle streams")
        idle = await idle_stream_memory(target, upstream, gateway.pid)
        results = {
            "time_to_first_event": ttfe,
            "events": events,
            "bare_handler": floor,
            "idle_streams": idle,
        }
    finally:
        for process in (gateway, sse):
            process.terminate()
            process.wait(timeout=20)
        bare.terminate()
        await bare.wait()
    (BUILD / "streaming.json").write_text(json.dumps(results, indent=2))
    rows = [
        ("figure", "measured", "target"),
        ("---", "---", "---"),
        (
            f"time to first event, direct (median of {TTFE_ROUNDS})",
            f"{ttfe['direct_ms']:.3f} ms",
            "",
        ),
        ("time to first event, through the gateway", f"{ttfe['gateway_ms']:.3f} ms", ""),
        ("added time to first event, at rest", f"{ttfe['added_ms']:.3f} ms", "≤ 0.5 ms"),
        (
            "first event from the bare grpc.aio handler (the gRPC hop alone), and the "
            "gateway's time over it",
            f"{ttfe['bare_ms']:.3f} ms, +{ttfe['added_over_bare_ms']:.3f} ms",
            "",
        ),
        *(
            row
            for load, bare_load in zip(events, floor, strict=True)
            for row in (
                (
                    f"events/s relayed, {load['streams']:,} concurrent streams of "
                    f"{EVENTS_PER_RUN + 3} events",
                    f"{load['events_per_s']:,.0f}",
                    "≥ 40,000",
                ),
                ("gateway CPU per relayed event", f"{load['cpu_us_per_event']:.1f} µs", ""),
                (
                    "the same streams from a bare grpc.aio handler (events/s, CPU per event)",
                    f"{bare_load['events_per_s']:,.0f}, {bare_load['cpu_us_per_event']:.1f} µs",
                    "",
                ),
                (
                    f"added time to first event meanwhile (median of {load['probes']} probes: "
                    f"{load['direct_ms']:.3f} direct, {load['gateway_ms']:.3f} ms relayed)",
                    f"{load['added_ms']:.3f} ms",
                    "",
                ),
            )
        ),
        (
            f"resident memory per idle stream ({idle['streams']} open)",
            f"{idle['kib_per_stream']:.1f} KiB",
            "≤ 32 KiB",
        ),
        (
            "gateway RSS before / after opening them",
            f"{idle['rss_before_mib']:.1f} / {idle['rss_after_mib']:.1f} MiB",
            "",
        ),
    ]
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
