"""What one upstream GET costs inside a grpc.aio handler, by HTTP client.

    .venv/bin/python bench/upstream_clients.py        # BENCH_ROUNDS (4), BENCH_SECONDS (4)

The evidence behind gateway/upstream/pool.py. Three minimal GetAgent servers, each a
grpc.aio generic handler on uvloop, pinned to CPU 0 in turn, answering with the same
pre-serialized Agent:

* ``no upstream``: the handler answers at once (grpc.aio's own cost per call);
* ``aiohttp GET``: the handler first makes one GET to the nginx upstream through an
  aiohttp ``ClientSession`` (64-connection pool) and reads the body;
* ``HttpPool GET``: the same GET through the gateway's :class:`gateway.upstream.pool.HttpPool`.

ghz drives each with 50 calls in flight from CPU 1, next to nginx (bench/lib/nginx_upstream.py).
Systems are interleaved (A B C, then C B A, ...) and the medians of the rounds printed:
calls/s and the server process's CPU microseconds per call. Every answer is checked as
in ``make bench`` (ghz reports only OK statuses, the Agent compared field by field).
Each server's output goes to build/bench/logs/NAME.log.
"""

from __future__ import annotations

import os
import statistics
import sys
import textwrap

from lib import procstat, tooling
from lib.nginx_upstream import AGENT_ID, Nginx
from lib.systems import GrpcSystem, check_answer, free_port, ghz

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import aiohttp, grpc, uvloop
    sys.path.insert(0, "bench")
    from lib.nginx_upstream import expected_agent
    from gateway.upstream.pool import HttpPool

    ANSWER = expected_agent().SerializeToString()

    async def main(kind, port, upstream):
        host, upstream_port = upstream.removeprefix("http://").split(":")
        path = "/v1/agents/{agent_id}"
        if kind == "none":
            async def handle(request, context):
                return ANSWER
        elif kind == "aiohttp":
            session = aiohttp.ClientSession(
                base_url=upstream, connector=aiohttp.TCPConnector(limit=64)
            )
            async def handle(request, context):
                async with session.get(path) as response:
                    await response.read()
                    assert response.status == 200
                return ANSWER
        else:
            pool = HttpPool(
                "http", host, int(upstream_port), size=64, connect_timeout=5.0,
                max_body_bytes=1 << 20,
            )
            async def handle(request, context):
                answer = await pool.request("GET", path, {{}}, None, 30.0)
                assert answer.status == 200
                return ANSWER
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "gagiteck.v1.AgentService",
            {{"GetAgent": grpc.unary_unary_rpc_method_handler(handle)}},
        ),))
        server.add_insecure_port(f"127.0.0.1:{{port}}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)

SYSTEMS = {"no upstream": "none", "aiohttp GET": "aiohttp", "HttpPool GET": "pool"}


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    seconds = float(os.environ.get("BENCH_SECONDS", "4"))
    nginx_binary = tooling.apt_tools()["nginx"]
    ghz_binary = tooling.go_tool(tooling.GHZ)
    protoset = tooling.descriptor_set()
    nginx = Nginx(tooling.BUILD / "nginx", free_port(), "1")
    nginx.start(nginx_binary)
    servers: dict[str, GrpcSystem] = {}
    try:
        source = SERVER.format(agent_id=AGENT_ID)
        for name, kind in SYSTEMS.items():
            port = free_port()
            argv = [str(tooling.PYTHON), "-c", source, kind, str(port), nginx.url]
            servers[name] = GrpcSystem(name, argv, "0", port=port)
            servers[name].start()
        for server in servers.values():
            ghz(ghz_binary, protoset, server.target, "1", 50, 3)  # warm-up
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        order = list(servers)
        for number in range(rounds):
            for name in order if number % 2 == 0 else order[::-1]:
                pid, target = servers[name].pid, servers[name].target
                before = procstat.cpu_seconds(pid)
                load = ghz(ghz_binary, protoset, target, "1", 50, seconds)
                used = procstat.cpu_seconds(pid) - before
                if load.errors or check_answer(target) is not None:
                    raise SystemExit(f"bench: {name} failed: {load.errors}")
                samples[name].append((load.rps, used / load.calls * 1e6))
                tooling.say(f"  {name:14s} {load.rps:7.0f}/s  {used / load.calls * 1e6:6.1f} µs")
        print("\n| handler | calls/s | CPU µs/call |\n|---|---|---|")
        for name, runs in samples.items():
            rate = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"| {name} | {rate:,.0f} | {cpu:.1f} |")
    finally:
        for server in servers.values():
            server.stop()
        nginx.stop()


if __name__ == "__main__":
    sys.exit(main())
