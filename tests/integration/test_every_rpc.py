"""Every RPC of the contract, called through the gateway against the emulator.

The walk-through uses a signed-up user's JWT (not open mode) so authentication flows
through the gateway as it would in production; a final check asserts that no RPC of the
contract was left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from gagiteck.v1 import (
    access_pb2,
    agent_pb2,
    auth_pb2,
    execution_pb2,
    search_pb2,
    webhook_pb2,
    workflow_pb2,
)
from google.protobuf import struct_pb2

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.server.descriptors import contract_services
from tests.support.harness import details_of, serving_gateway
from tests.support.recorder import DEPLOYED_ONLY, Recorder


@pytest_asyncio.fixture
async def rpc() -> AsyncIterator[Recorder]:
    config = EmulatorConfig(open_mode=False, step_delay_seconds=0.01, stream_delay_seconds=0)
    async with running_emulator(config) as emulator, serving_gateway(emulator.url) as gateway:
        yield Recorder(gateway)


def _struct(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@pytest.mark.asyncio
async def test_every_rpc(rpc: Recorder) -> None:
    # -- auth: without a credential the API refuses; then sign up, log in, use the JWT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc("AgentService", "ListAgents", agent_pb2.ListAgentsRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    user = await rpc(
        "AuthService",
        "SignUp",
        auth_pb2.SignUpRequest(email="ada@example.com", password="correct-horse", name="Ada"),
    )
    assert user.id
    assert user.created_at.seconds > 0
    login = await rpc(
        "AuthService",
        "Login",
        auth_pb2.LoginRequest(email="ada@example.com", password="correct-horse"),
    )
    assert login.token_type.lower() == "bearer"
    assert login.expires_in > 0
    rpc.metadata = (("authorization", f"Bearer {login.access_token}"),)
    me = await rpc("AuthService", "GetCurrentUser", auth_pb2.GetCurrentUserRequest())
    assert me.email == "ada@example.com"
    key = await rpc("AuthService", "CreateApiKey", auth_pb2.CreateApiKeyRequest(name="ci"))
    assert key.key.startswith("ggt_")
    keys = await rpc("AuthService", "ListApiKeys", auth_pb2.ListApiKeysRequest())
    assert [k.id for k in keys.data] == [key.id]
    assert keys.data[0].key == ""  # shown once only
    rpc.metadata = (("authorization", f"Bearer {key.key}"),)  # the API key works too
    await rpc("AuthService", "DeleteApiKey", auth_pb2.DeleteApiKeyRequest(key_id=key.id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc("AuthService", "GetCurrentUser", auth_pb2.GetCurrentUserRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    rpc.metadata = (("authorization", f"Bearer {login.access_token}"),)

    # -- agents
    agent = await rpc(
        "AgentService",
        "CreateAgent",
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(
                name="Support Bot",
                system_prompt="You are a helpful support agent.",
                config=agent_pb2.AgentConfig(model="claude-3-sonnet", temperature=0.7),
                tools=["calculator"],
                metadata=_struct(department="support"),
            )
        ),
    )
    assert agent.status == agent_pb2.AGENT_STATUS_ACTIVE
    listed = await rpc("AgentService", "ListAgents", agent_pb2.ListAgentsRequest(limit=5))
    assert (listed.total, listed.limit, listed.offset) == (1, 5, 0)
    got = await rpc("AgentService", "GetAgent", agent_pb2.GetAgentRequest(agent_id=agent.id))
    assert got.metadata["department"] == "support"
    update = agent_pb2.UpdateAgentRequest(
        agent_id=agent.id,
        agent=agent_pb2.Agent(name="ignored", config=agent_pb2.AgentConfig(temperature=0.2)),
    )
    update.update_mask.paths.append("config.temperature")
    updated = await rpc("AgentService", "UpdateAgent", update)
    assert updated.name == "Support Bot"
    assert updated.config.temperature == pytest.approx(0.2)
    assert updated.config.model == "claude-3-sonnet"
    run = await rpc(
        "AgentService",
        "RunAgent",
        agent_pb2.RunAgentRequest(agent_id=agent.id, message="What is 2 + 2?"),
    )
    assert run.usage.total_tokens == run.usage.input_tokens + run.usage.output_tokens
    assert run.tool_calls[0].result.number_value == 4
    events = await rpc.stream(
        "AgentService",
        "StreamAgentRun",
        agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="What is 2 + 2?"),
    )
    assert events[-1].run_completed.content == run.content

    # -- workflows and executions
    workflow = await rpc(
        "WorkflowService",
        "CreateWorkflow",
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(
                name="Pipeline",
                description="research then write",
                steps=[
                    workflow_pb2.WorkflowStep(
                        id="research",
                        type="agent",
                        name="Research",
                        config=_struct(agent_id=agent.id, message="Topic: {{input.topic}}"),
                    ),
                    workflow_pb2.WorkflowStep(
                        id="shout",
                        type="transform",
                        config=_struct(template="DONE: {{research.output}}"),
                    ),
                ],
            )
        ),
    )
    assert len(workflow.steps) == 2
    await rpc("WorkflowService", "ListWorkflows", workflow_pb2.ListWorkflowsRequest())
    await rpc(
        "WorkflowService", "GetWorkflow", workflow_pb2.GetWorkflowRequest(workflow_id=workflow.id)
    )
    renamed = workflow_pb2.UpdateWorkflowRequest(
        workflow_id=workflow.id, workflow=workflow_pb2.Workflow(description="new")
    )
    renamed.update_mask.paths.append("description")
    assert (await rpc("WorkflowService", "UpdateWorkflow", renamed)).description == "new"
    execution = await rpc(
        "WorkflowService",
        "TriggerWorkflow",
        workflow_pb2.TriggerWorkflowRequest(workflow_id=workflow.id, input=_struct(topic="AI")),
    )
    states = await rpc.stream(
        "ExecutionService",
        "WatchExecution",
        execution_pb2.WatchExecutionRequest(execution_id=execution.id),
    )
    final = states[-1]
    assert final.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert final.step_results[1].output.string_value.startswith("DONE: ")
    runs = await rpc(
        "WorkflowService",
        "ListWorkflowRuns",
        workflow_pb2.ListWorkflowRunsRequest(workflow_id=workflow.id),
    )
    assert [r.id for r in runs.data] == [execution.id]
    running = await rpc(
        "ExecutionService",
        "ListExecutions",
        execution_pb2.ListExecutionsRequest(status=execution_pb2.EXECUTION_STATUS_COMPLETED),
    )
    assert execution.id in {e.id for e in running.data}
    got_execution = await rpc(
        "ExecutionService",
        "GetExecution",
        execution_pb2.GetExecutionRequest(execution_id=execution.id),
    )
    assert got_execution.completed_at.seconds > 0
    logs = await rpc(
        "ExecutionService",
        "GetExecutionLogs",
        execution_pb2.GetExecutionLogsRequest(execution_id=execution.id),
    )
    assert logs.total > 0
    assert logs.data[0].level != execution_pb2.LOG_LEVEL_UNSPECIFIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc(
            "ExecutionService",
            "CancelExecution",
            execution_pb2.CancelExecutionRequest(execution_id=execution.id),
        )
    assert caught.value.code() is grpc.StatusCode.ABORTED  # it had finished

    # -- webhooks
    hook = await rpc(
        "WebhookService",
        "CreateWebhook",
        webhook_pb2.CreateWebhookRequest(
            webhook=webhook_pb2.Webhook(
                url="https://hooks.example.com/gagiteck",
                events=["execution.completed"],
                secret="whsec_x",
            )
        ),
    )
    assert hook.secret == ""  # written, never returned
    await rpc("WebhookService", "ListWebhooks", webhook_pb2.ListWebhooksRequest())
    await rpc("WebhookService", "GetWebhook", webhook_pb2.GetWebhookRequest(webhook_id=hook.id))
    off = webhook_pb2.UpdateWebhookRequest(
        webhook_id=hook.id, webhook=webhook_pb2.Webhook(active=False)
    )
    off.update_mask.paths.append("active")
    assert (await rpc("WebhookService", "UpdateWebhook", off)).active is False
    events_list = await rpc(
        "WebhookService", "ListWebhookEvents", webhook_pb2.ListWebhookEventsRequest()
    )
    assert "execution.completed" in events_list.events
    delivery = await rpc(
        "WebhookService", "TestWebhook", webhook_pb2.TestWebhookRequest(webhook_id=hook.id)
    )
    assert delivery.event == "webhook.test"
    await rpc(
        "WebhookService", "DeleteWebhook", webhook_pb2.DeleteWebhookRequest(webhook_id=hook.id)
    )

    # -- search
    found = await rpc(
        "SearchService", "Search", search_pb2.SearchRequest(q="support", types="agent,workflow")
    )
    assert [(r.type, r.id) for r in found.data] == [("agent", agent.id)]
    assert found.data[0].score > 0

    # -- access control
    roles = await rpc("AccessService", "ListRoles", access_pb2.ListRolesRequest())
    assert "role_developer" in {r.id for r in roles.data}
    team = await rpc("AccessService", "GetTeam", access_pb2.GetTeamRequest())
    assert len(team.members) == 1
    member = await rpc(
        "AccessService",
        "InviteTeamMember",
        access_pb2.InviteTeamMemberRequest(email="bob@example.com", role_id="role_developer"),
    )
    assert member.status == access_pb2.MEMBER_STATUS_INVITED
    promote = access_pb2.UpdateTeamMemberRequest(
        member_id=member.id, member=access_pb2.TeamMember(role_id="role_admin")
    )
    promote.update_mask.paths.append("role_id")
    assert (await rpc("AccessService", "UpdateTeamMember", promote)).role_id == "role_admin"
    await rpc(
        "AccessService", "RemoveTeamMember", access_pb2.RemoveTeamMemberRequest(member_id=member.id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc(
            "AccessService",
            "InviteTeamMember",
            access_pb2.InviteTeamMemberRequest(email="eve@example.com", role_id="role_nope"),
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(caught.value)["BadRequest"].field_violations

    # -- clean-up deletes, and NOT_FOUND afterwards
    await rpc(
        "WorkflowService",
        "DeleteWorkflow",
        workflow_pb2.DeleteWorkflowRequest(workflow_id=workflow.id),
    )
    await rpc("AgentService", "DeleteAgent", agent_pb2.DeleteAgentRequest(agent_id=agent.id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc("AgentService", "GetAgent", agent_pb2.GetAgentRequest(agent_id=agent.id))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert details_of(caught.value)["ErrorInfo"].reason == "NOT_FOUND"

    # -- the deployed service's operations are not part of the reference form
    for service, method, request in DEPLOYED_ONLY:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rpc(service, method, request)
        # no such path (404), or the path with another verb only (405)
        expected = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED}
        assert caught.value.code() in expected, method

    every = {m.full_name for s in contract_services() for m in s.methods}
    assert rpc.called == every, f"not exercised: {sorted(every - rpc.called)}"
