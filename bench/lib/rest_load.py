"""Direct REST: an aiohttp client calling the upstream the way a service would.

    python bench/lib/rest_load.py URL EXPECTED_ID --concurrency 50 --seconds 5 [--rps R]

One ClientSession with a pooled connector (64 connections, the gateway's default pool);
every answer must be status 200 with a JSON body whose ``id`` is EXPECTED_ID, or it
counts as an error. Without ``--rps`` it is a closed loop of ``--concurrency`` workers;
with it, calls start at a fixed rate (open loop), at most ``--concurrency`` in flight, as
``ghz --rps`` does, and latency runs from a call's start to its parsed answer.
After one second of warm-up, prints one JSON object: calls, errors, seconds, calls/s,
latency percentiles (ms), this process's CPU seconds and its peak RSS for the measured part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import aiohttp


class Load:
    def __init__(self, session: aiohttp.ClientSession, url: str, expected_id: str) -> None:
        self.session = session
        self.url = url
        self.expected_id = expected_id
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.record = False

    async def call(self) -> None:
        started = time.perf_counter()
        try:
            async with self.session.get(self.url) as response:
                body = await response.json()
                ok = response.status == 200 and body.get("id") == self.expected_id
                problem = "" if ok else f"status {response.status}"
        except (aiohttp.ClientError, ValueError, AttributeError) as exc:
            problem = type(exc).__name__
        if not self.record:
            return
        if problem:
            self.errors[problem] = self.errors.get(problem, 0) + 1
        else:
            self.latencies.append(time.perf_counter() - started)

    async def closed(self, concurrency: int, until: float) -> None:
        async def worker() -> None:
            while time.perf_counter() < until:
                await self.call()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open(self, rps: float, concurrency: int, until: float) -> None:
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                await self.call()
            finally:
                slots.release()

        start = time.perf_counter()
        sent = 0
        while True:
            due = start + sent / rps
            now = time.perf_counter()
            if due >= until:
                break
            if due > now:
                await asyncio.sleep(due - now)
            await slots.acquire()
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.gather(*tasks)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(session, args.url, args.expected_id)
        await load.closed(args.concurrency, time.perf_counter() + args.warmup)
        load.record = True
        cpu_before = cpu_now()
        started = time.perf_counter()
        until = started + args.seconds
        if args.rps:
            await load.open(args.rps, args.concurrency, until)
        else:
            await load.closed(args.concurrency, until)
        elapsed = time.perf_counter() - started
        cpu = cpu_now() - cpu_before
    calls = len(load.latencies)
    return {
        "calls": calls,
        "errors": load.errors,
        "seconds": elapsed,
        "rps": calls / elapsed,
        "p50_ms": percentile(load.latencies, 0.50) * 1e3,
        "p99_ms": percentile(load.latencies, 0.99) * 1e3,
        "cpu_seconds": cpu,
        "peak_rss": peak_rss(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("expected_id")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rps", type=float, default=0.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
