"""The naive passthrough: the least one can write to serve GetAgent over REST. A yardstick.

    python bench/lib/naive_passthrough.py --upstream http://127.0.0.1:8081 [--listen 127.0.0.1:0]

A grpc.aio server with the generated AgentService servicer; GetAgent and ListAgents do one
aiohttp GET on a shared session, CreateAgent one POST of ``json_format.MessageToDict`` of
the agent, and each reads the answer with ``json_format.ParseDict``. The only extra
work is what any client of this API needs before protobuf's JSON reader accepts an agent:
naive timestamps get a ``Z`` (they are UTC) and the lower-case status becomes the enum
name. No deadlines, no error details, no metadata handling: errors are plain statuses.
Prints ``PORT <n>`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import grpc
from gagiteck.v1 import agent_pb2, agent_pb2_grpc
from google.protobuf import json_format


def tolerate(data: dict[str, Any]) -> dict[str, Any]:
    for key in ("created_at", "updated_at"):
        value = data.get(key)
        if isinstance(value, str) and not value.endswith("Z") and "+" not in value[10:]:
            data[key] = value + "Z"
    status = data.get("status")
    if isinstance(status, str):
        data["status"] = "AGENT_STATUS_" + status.upper()
    return data


class NaiveAgents(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def GetAgent(
        self, request: agent_pb2.GetAgentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.Agent:
        url = f"{self.base_url}/v1/agents/{quote(request.agent_id, safe='')}"
        async with self.session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                await context.abort(grpc.StatusCode.UNKNOWN, f"upstream {response.status}")
        agent = agent_pb2.Agent()
        json_format.ParseDict(tolerate(json.loads(body)), agent, ignore_unknown_fields=True)
        return agent

    async def ListAgents(
        self, request: agent_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.ListAgentsResponse:
        params = {"limit": str(request.limit), "offset": str(request.offset)}
        async with self.session.get(f"{self.base_url}/v1/agents", params=params) as response:
            body = await response.read()
            if response.status != 200:
                await context.abort(grpc.StatusCode.UNKNOWN, f"upstream {response.status}")
        data = json.loads(body)
        data["data"] = [tolerate(item) for item in data.get("data", [])]
        page = agent_pb2.ListAgentsResponse()
        json_format.ParseDict(data, page, ignore_unknown_fields=True)
        return page

    async def CreateAgent(
        self, request: agent_pb2.CreateAgentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.Agent:
        payload = json_format.MessageToDict(request.agent, preserving_proto_field_name=True)
        async with self.session.post(f"{self.base_url}/v1/agents", json=payload) as response:
            body = await response.read()
            if response.status not in (200, 201):
                await context.abort(grpc.StatusCode.UNKNOWN, f"upstream {response.status}")
        agent = agent_pb2.Agent()
        json_format.ParseDict(tolerate(json.loads(body)), agent, ignore_unknown_fields=True)
        return agent


async def serve(listen: str, upstream: str) -> None:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            NaiveAgents(session, upstream.rstrip("/")), server
        )
        port = server.add_insecure_port(listen)
        await server.start()
        print(f"PORT {port}", flush=True)
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
