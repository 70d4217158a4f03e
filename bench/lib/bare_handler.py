"""The floor: a bare grpc.aio handler that answers from ready messages. A yardstick.

    python bench/lib/bare_handler.py [--listen 127.0.0.1:0]

The generated AgentService servicer on grpc.aio (the gateway's event loop, uvloop), with
GetAgent returning the benchmark's expected Agent, built once at start, and
StreamAgentRun (agent ``fast-N``) yielding the N + 3 events the streaming benchmark's
upstream sends, also built once. No upstream, no metadata handling: what any Python gRPC
server spends per call or per message before it does any work, the basis of the "CPU per
call at most twice the bare handler" target. Prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import uvloop
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.nginx_upstream import expected_agent


class BareAgents(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.agent = expected_agent()

    async def GetAgent(
        self, request: agent_pb2.GetAgentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        return self.agent

    async def StreamAgentRun(
        self,
        request: agent_pb2.StreamAgentRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        for event in run_events(int(request.agent_id.removeprefix("fast-") or 10)):
            yield event


@functools.cache
def run_events(count: int) -> tuple[Any, ...]:
    """The events bench/lib/sse_upstream.py sends for agent ``fast-<count>``, as messages."""
    started = agent_pb2.AgentRunEvent(event_id="1")
    started.run_started.run_id = "run_bench"
    events = [started]
    for i in range(count):
        delta = agent_pb2.AgentRunEvent(event_id=str(i + 2))
        delta.content_delta.delta = f"token{i} "
        events.append(delta)
    usage = agent_pb2.AgentRunEvent(event_id=str(count + 2))
    usage.usage.input_tokens, usage.usage.output_tokens = 5, count
    completed = agent_pb2.AgentRunEvent(event_id=str(count + 3))
    completed.run_completed.id = "run_bench"
    completed.run_completed.content = "".join(f"token{i} " for i in range(count))
    return (*events, usage, completed)


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareAgents(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    uvloop.run(serve(args.listen))


if __name__ == "__main__":
    main()
