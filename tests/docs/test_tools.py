"""The docs' commands for the tools of `make tools` work, after `make tools`, as written.

Every command of a ```bash block that calls ``build/bin/…`` (README.md and docs/*.md) runs
from the checkout against a real gateway, with two substitutions a reader makes too: the
gateway's address for ``127.0.0.1:50051``, and an agent's id for the placeholder
``agent_…``. The README's `make tools` line is the one `make doctest` has run before.
"""

from __future__ import annotations

import json
import re
import subprocess

import grpc
import pytest
from gagiteck.v1 import agent_pb2, agent_pb2_grpc

from tests.support.paths import REPO

from .gateway_process import DOCUMENTED_ADDRESS, example_env, missing
from .markdown import DOCUMENTS, Block, blocks, commands

TOOLS = ("grpcurl", "ghz", "grpc-health-probe")
TOOL_BLOCKS = [
    block
    for path in DOCUMENTS
    for block in blocks(path)
    if block.language == "bash" and "build/bin/" in block.text
]
PLACEHOLDER_AGENT = "agent_…"
SECONDS = 120


@pytest.fixture(scope="module")
def agent_id(gateway_target: str) -> str:
    with grpc.insecure_channel(gateway_target) as channel:
        agents = agent_pb2_grpc.AgentServiceStub(channel)
        request = agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name="Docs"))
        return str(agents.CreateAgent(request, timeout=10).id)


@pytest.fixture(scope="module", autouse=True)
def _tools_installed() -> None:
    absent = [name for name in TOOLS if not (REPO / "build" / "bin" / name).exists()]
    if absent:
        missing(f"build/bin lacks {', '.join(absent)}: run `make tools`")


def test_the_readme_shows_the_tools() -> None:
    readme = [b for b in TOOL_BLOCKS if b.path.name == "README.md"]
    shown = " ".join(command for block in readme for command in commands(block.text))
    for name in TOOLS:
        assert f"build/bin/{name} " in shown, name
    assert "make tools" in commands(readme[0].text)


@pytest.mark.parametrize("block", TOOL_BLOCKS, ids=[block.where for block in TOOL_BLOCKS])
def test_tool_commands_run_as_written(block: Block, gateway_target: str, agent_id: str) -> None:
    for command in commands(block.text):
        if command == "make tools":
            continue  # run by `make doctest` before this test, as `_tools_installed` checks
        sent = command.replace(DOCUMENTED_ADDRESS, gateway_target)
        sent = sent.replace(PLACEHOLDER_AGENT, agent_id)
        ran = subprocess.run(
            ["bash", "-c", sent],
            cwd=REPO,
            env=example_env(gateway_target),
            capture_output=True,
            text=True,
            timeout=SECONDS,
            check=False,
        )
        assert ran.returncode == 0, f"{block.where}: {command}\n{ran.stdout}\n{ran.stderr}"
        _check_output(command, ran.stdout, ran.stderr)


def _check_output(command: str, out: str, err: str) -> None:
    """What each tool's answer must show beyond its exit status."""
    if "grpc-health-probe" in command:
        assert "status: SERVING" in out + err  # on stderr
    elif "ghz" in command:
        codes = re.findall(r"^\s+\[(\w+)\]\s+\d+ responses", out, re.MULTILINE)
        assert codes == ["OK"], out
    elif " list" in command:
        assert "gagiteck.v1.AgentService" in out.split()
    elif "grpcurl" in command:
        assert json.loads(out), out
