"""A fixed-cost SSE upstream for the streaming benchmark (never the bottleneck).

    python bench/lib/sse_upstream.py PORT

``POST /v1/agents/{agent_id}/run`` answers ``text/event-stream``:

* agent ``fast-N``: ``run.started``, N ``content.delta`` events, ``usage`` and
  ``run.completed``, pre-encoded once per N and written in one piece after the first
  event;
* agent ``idle``: ``run.started``, then a heartbeat comment every 10 s, forever.

``GET /stats`` answers ``{"open": <streams in progress>}``.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import orjson
from aiohttp import web

OPEN = web.AppKey("open", list[int])


def _event(n: int, name: str, data: object) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (n, name.encode(), orjson.dumps(data))


STARTED = _event(1, "run.started", {"run_id": "run_bench", "agent_id": "a", "model": "bench"})


@functools.cache
def rest_of(count: int) -> bytes:
    parts = [_event(i + 2, "content.delta", {"delta": f"token{i} "}) for i in range(count)]
    parts.append(_event(count + 2, "usage", {"input_tokens": 5, "output_tokens": count}))
    content = "".join(f"token{i} " for i in range(count))
    parts.append(
        _event(count + 3, "run.completed", {"id": "run_bench", "agent_id": "a", "content": content})
    )
    return b"".join(parts)


async def run(request: web.Request) -> web.StreamResponse:
    await request.read()
    agent = request.match_info["agent_id"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    request.app[OPEN][0] += 1
    try:
        await response.write(STARTED)
        if agent == "idle":
            while True:
                await asyncio.sleep(10)
                await response.write(b": ping\n\n")
        count = int(agent.removeprefix("fast-")) if agent.startswith("fast-") else 10
        await response.write(rest_of(count))
        await response.write_eof()
    finally:
        request.app[OPEN][0] -= 1
    return response


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"open": request.app[OPEN][0]})


def main() -> None:
    app = web.Application()
    app[OPEN] = [0]
    app.router.add_post("/v1/agents/{agent_id}/run", run)
    app.router.add_get("/stats", stats)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        handler_cancellation=True,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
