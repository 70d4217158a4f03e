"""Deterministic agent runs, their tools, and the safe calculator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.emulator.calculator import CalculatorError, evaluate, find_expression
from gateway.emulator.engine import plan_run
from gateway.emulator.resources import Agent

from .emulator_testkit import Api

RESEARCHER = {
    "name": "Research Assistant",
    "system_prompt": "You are a helpful research assistant. Be concise.",
    "tools": ["web_search", "calculator", "knowledge_base"],
}


def _agent(**overrides: object) -> Agent:
    fields: dict[str, object] = {
        "id": "agent_1",
        "account_id": "user_1",
        "name": "Helper",
        "system_prompt": "You are an expert planner.",
        "config": {},
        "tools": [],
        "metadata": {},
    }
    fields.update(overrides)
    return Agent(**fields)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_run_is_deterministic_and_complete(api: Api) -> None:
    agent = (await api.post("/v1/agents", RESEARCHER)).body
    message = {"message": "What is 12 * (3 + 4)?", "context": {"user_id": "u1"}}
    first = (await api.post(f"/v1/agents/{agent['id']}/run", message)).body
    second = (await api.post(f"/v1/agents/{agent['id']}/run", message)).body
    assert set(first) == {"id", "agent_id", "content", "model", "tool_calls", "usage", "created_at"}
    assert first["id"] != second["id"]
    assert first["id"].startswith("run_")
    for key in ("content", "model", "tool_calls", "usage"):
        assert first[key] == second[key]
    assert first["model"] == "claude-3-sonnet"
    assert "a helpful research assistant" in first["content"]
    assert '"What is 12 * (3 + 4)?"' in first["content"]
    assert "user_id" in first["content"]
    calls = {call["name"]: call for call in first["tool_calls"]}
    assert calls["calculator"]["arguments"] == {"expression": "12 * (3 + 4)"}
    assert calls["calculator"]["result"] == 84
    assert len(calls["web_search"]["result"]) == 3
    assert "knowledge_base" not in calls
    assert [call["id"] for call in first["tool_calls"]] == ["call_1", "call_2"]


@pytest.mark.asyncio
async def test_usage_counts_words(api: Api) -> None:
    agent = (await api.post("/v1/agents", {"name": "n", "system_prompt": "You are terse."})).body
    run = (await api.post(f"/v1/agents/{agent['id']}/run", {"message": "hello there"})).body
    usage = run["usage"]
    assert usage["input_tokens"] == 2 + 3
    assert usage["output_tokens"] == len(run["content"].split())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert run["tool_calls"] == []


@pytest.mark.asyncio
async def test_model_comes_from_config(api: Api) -> None:
    agent = (
        await api.post("/v1/agents", {"name": "n", "config": {"model": "claude-3-haiku"}})
    ).body
    run = (await api.post(f"/v1/agents/{agent['id']}/run", {"message": "hi"})).body
    assert run["model"] == "claude-3-haiku"


@pytest.mark.asyncio
async def test_a_run_records_a_completed_agent_execution(api: Api) -> None:
    agent = (await api.post("/v1/agents", {"name": "n"})).body
    run = (await api.post(f"/v1/agents/{agent['id']}/run", {"message": "hi"})).body
    executions = (await api.get("/v1/executions")).body["data"]
    assert len(executions) == 1
    execution = executions[0]
    assert execution["type"] == "agent"
    assert execution["resource_id"] == agent["id"]
    assert execution["status"] == "completed"
    assert execution["result"]["id"] == run["id"]
    assert execution["input"]["message"] == "hi"
    assert execution["completed_at"] is not None


@pytest.mark.asyncio
async def test_run_errors(api: Api) -> None:
    assert (await api.post("/v1/agents/agent_missing/run", {"message": "hi"})).status == 404
    agent = (await api.post("/v1/agents", {"name": "n"})).body
    reply = await api.post(f"/v1/agents/{agent['id']}/run", {"stream": False})
    assert reply.status == 422
    assert reply.body["detail"][0]["loc"] == ["body", "message"]


def test_reply_with_directive_and_max_tokens() -> None:
    fixed = _agent(system_prompt="Reply with 'test successful'")
    assert plan_run(fixed, "Run test").content == "test successful"
    capped = _agent(config={"max_tokens": 3})
    plan = plan_run(capped, "a b c d e f")
    assert len(plan.chunks) == 3
    assert plan.usage["output_tokens"] == 3


def test_other_tools_echo_when_named() -> None:
    agent = _agent(tools=["ticket_system"])
    assert plan_run(agent, "hello").tool_calls == ()
    calls = plan_run(agent, "open a ticket system entry").tool_calls
    assert calls[0].result == {"echo": "open a ticket system entry"}


def test_max_iterations_caps_tool_calls() -> None:
    agent = _agent(tools=["calculator", "web_search"], config={"max_iterations": 1})
    assert len(plan_run(agent, "what is 1+1").tool_calls) == 1


@settings(deadline=None, max_examples=60)
@given(message=st.text(max_size=80), prompt=st.text(max_size=80))
def test_chunks_always_rebuild_the_content(message: str, prompt: str) -> None:
    plan = plan_run(_agent(system_prompt=prompt, tools=["calculator", "web_search"]), message)
    assert "".join(plan.chunks) == plan.content
    assert plan.usage["output_tokens"] == len(plan.chunks)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ^ 3 ^ 2", 512),
        ("2 ** 10", 1024),
        ("-4 + 10 / 4", -1.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("0.1 + 0.2", 0.3),
    ],
)
def test_calculator_values(text: str, value: float) -> None:
    assert evaluate(text) == value


@pytest.mark.parametrize("text", ["1 / 0", "2 ** 1000", "(1 + 2", "__import__('os')", "1 +"])
def test_calculator_refuses(text: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(text)


@settings(deadline=None, max_examples=60)
@given(a=st.integers(-10_000, 10_000), b=st.integers(-10_000, 10_000), op=st.sampled_from("+-*"))
def test_calculator_matches_integer_arithmetic(a: int, b: int, op: str) -> None:
    expected = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert evaluate(f"{a} {op} ({b})") == expected


def test_expression_is_found_in_prose() -> None:
    assert find_expression("Please compute 3 * 7 for me.") == "3 * 7"
    assert find_expression("no numbers here") is None
