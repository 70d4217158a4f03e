"""Bare grpc.aio unary throughput across grpcio releases (the basis of the grpcio pin).

    python bench/grpcio_versions.py 1.85.1 1.80.0 1.75.1 ...

For each version a throwaway virtualenv under build/bench-grpcio/ gets that grpcio alone.
A bare grpc.aio server (one generic unary handler, bytes in and out, no protobuf) runs on
CPU 0 and a grpc.aio client with 64 calls in flight on CPU 1. Versions are interleaved in
rounds (A B C A B C …) so machine drift spreads over all of them. Reported per version:
the median calls/s and the server's CPU microseconds per call over the rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench-grpcio"

SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys, grpc

    async def echo(request, context):
        return request

    async def main():
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(usage.ru_utime + usage.ru_stime, flush=True)
        await server.stop(0)

    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import asyncio, sys, time, grpc

    async def main(port, seconds, concurrency):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            payload = b"x" * 200
            for _ in range(200):
                await call(payload)
            done = 0
            stop = time.perf_counter() + seconds
            async def worker():
                nonlocal done
                while time.perf_counter() < stop:
                    assert await call(payload) == payload
                    done += 1
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            print(done, time.perf_counter() - started)

    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
    """
)


def venv_for(version: str) -> Path:
    env = WORK / f"grpcio-{version}"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(env)])
        subprocess.check_call([str(python), "-m", "pip", "install", "-q", f"grpcio=={version}"])
    return python


def one_round(python: Path, seconds: float, concurrency: int) -> tuple[float, float]:
    server = subprocess.Popen(
        ["taskset", "-c", "0", str(python), "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    port = server.stdout.readline().strip()
    out = subprocess.check_output(
        ["taskset", "-c", "1", str(python), "-c", CLIENT, port, str(seconds), str(concurrency)],
        text=True,
    )
    server.stdin.write("\n")
    server.stdin.flush()
    cpu = float(server.stdout.readline())
    server.wait(timeout=10)
    calls, elapsed = out.split()
    return int(calls) / float(elapsed), cpu / int(calls) * 1e6


def main(versions: list[str]) -> None:
    rounds = int(os.environ.get("ROUNDS", "5"))
    seconds = float(os.environ.get("SECONDS_PER_RUN", "4"))
    pythons = {v: venv_for(v) for v in versions}
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in versions}
    for i in range(rounds):
        order = versions if i % 2 == 0 else list(reversed(versions))
        for version in order:
            results[version].append(one_round(pythons[version], seconds, 64))
    base = statistics.median(r[0] for r in results[versions[0]])
    print(f"{'grpcio':>10} {'calls/s':>9} {'µs CPU/call':>12} {'vs ' + versions[0]:>10}")
    for version in versions:
        rate = statistics.median(r[0] for r in results[version])
        cpu = statistics.median(r[1] for r in results[version])
        print(f"{version:>10} {rate:9.0f} {cpu:12.1f} {rate / base:10.2f}")
    print(json.dumps({v: results[v] for v in versions}))


if __name__ == "__main__":
    main(sys.argv[1:] or ["1.85.1", "1.80.0", "1.76.0", "1.74.0", "1.71.0"])
