"""Every RPC of the contract, through the gateway, against the emulator's deployed dialect:
the deployed service's shapes reach callers, and what callers set reaches the service.

The walk-through mirrors tests/integration/test_every_rpc.py (the reference form) and
ends with the same check that no RPC of the contract was left out.
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
    platform_pb2,
    search_pb2,
    webhook_pb2,
    workflow_pb2,
)
from google.protobuf import field_mask_pb2, struct_pb2

from gateway.emulator import EmulatorConfig, running_emulator
from gateway.server.descriptors import contract_services
from tests.support.harness import details_of, serving_gateway
from tests.support.recorder import Recorder

DEPLOYED = EmulatorConfig(dialect="deployed", step_delay_seconds=0.01, stream_delay_seconds=0)


@pytest_asyncio.fixture
async def rpc() -> AsyncIterator[Recorder]:
    async with running_emulator(DEPLOYED) as emulator, serving_gateway(emulator.url) as gateway:
        yield Recorder(gateway)


def _struct(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def _refused(rpc: Recorder, service: str, method: str, request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc(service, method, request)
    return caught.value


@pytest.mark.asyncio
async def test_every_rpc_against_the_deployed_service(rpc: Recorder) -> None:
    await _platform_and_auth(rpc)
    agent = await _agents(rpc)
    await _workflows_and_runs(rpc, agent)
    await _executions(rpc, agent)
    await _webhooks(rpc)
    await _search(rpc)
    await _access(rpc)
    await rpc("AgentService", "DeleteAgent", agent_pb2.DeleteAgentRequest(agent_id=agent.id))
    gone = await _refused(
        rpc, "AgentService", "GetAgent", agent_pb2.GetAgentRequest(agent_id=agent.id)
    )
    assert gone.code() is grpc.StatusCode.NOT_FOUND
    every = {m.full_name for s in contract_services() for m in s.methods}
    assert rpc.called == every, f"not exercised: {sorted(every - rpc.called)}"


async def _platform_and_auth(rpc: Recorder) -> None:
    health = await rpc("PlatformService", "GetHealth", platform_pb2.GetHealthRequest())
    assert (health.status, health.database, health.redis) == ("healthy", "connected", "connected")
    assert health.version
    info = await rpc("PlatformService", "GetServiceInfo", platform_pb2.GetServiceInfoRequest())
    assert (info.docs, info.version) == ("/docs", health.version)
    user = await rpc(
        "AuthService",
        "SignUp",
        auth_pb2.SignUpRequest(email="ada@example.com", password="correct-horse", name="Ada"),
    )
    assert user.updated_at.seconds > 0  # deployed form
    login = await rpc(
        "AuthService",
        "Login",
        auth_pb2.LoginRequest(email="ada@example.com", password="correct-horse"),
    )
    rpc.metadata = (("authorization", f"Bearer {login.access_token}"),)
    me = await rpc("AuthService", "GetCurrentUser", auth_pb2.GetCurrentUserRequest())
    assert me.email == "ada@example.com"
    renamed = await rpc(
        "AuthService", "UpdateCurrentUser", auth_pb2.UpdateCurrentUserRequest(name="Ada L.")
    )
    assert renamed.name == "Ada L."
    changed = await rpc(
        "AuthService",
        "ChangePassword",
        auth_pb2.ChangePasswordRequest(current_password="correct-horse", new_password="battery-9"),
    )
    assert changed.id == user.id
    wrong = await _refused(
        rpc,
        "AuthService",
        "ChangePassword",
        auth_pb2.ChangePasswordRequest(current_password="correct-horse", new_password="x" * 9),
    )
    assert wrong.code() is grpc.StatusCode.UNAUTHENTICATED
    key = await rpc("AuthService", "CreateApiKey", auth_pb2.CreateApiKeyRequest(name="ci"))
    assert key.key.startswith("ggt_")
    keys = await rpc("AuthService", "ListApiKeys", auth_pb2.ListApiKeysRequest(limit=5))
    # a bare list upstream, paged by the gateway: never a total of 0 beside real items
    assert ([k.id for k in keys.data], keys.total, keys.limit, keys.offset) == ([key.id], 1, 5, 0)
    await rpc("AuthService", "DeleteApiKey", auth_pb2.DeleteApiKeyRequest(key_id=key.id))


async def _agents(rpc: Recorder) -> agent_pb2.Agent:
    agent: agent_pb2.Agent = await rpc(
        "AgentService",
        "CreateAgent",
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(
                name="Support Bot",
                system_prompt="You are a helpful support agent.",
                config=agent_pb2.AgentConfig(
                    model="claude-3-opus", max_tokens=777, temperature=0.7
                ),
                tools=["calculator"],
                metadata=_struct(department="support"),
            )
        ),
    )
    assert (agent.config.model, agent.config.max_tokens) == ("claude-3-opus", 777)
    listed = await rpc("AgentService", "ListAgents", agent_pb2.ListAgentsRequest(limit=5))
    assert (listed.total, listed.limit, listed.offset) == (1, 5, 0)
    got = await rpc("AgentService", "GetAgent", agent_pb2.GetAgentRequest(agent_id=agent.id))
    assert got.metadata["department"] == "support"
    # the service replaces config whole: the gateway sends it whole, other members kept
    warmer = agent_pb2.UpdateAgentRequest(
        agent_id=agent.id,
        agent=agent_pb2.Agent(config=agent_pb2.AgentConfig(temperature=0.2)),
        update_mask=_mask("config.temperature"),
    )
    updated = await rpc("AgentService", "UpdateAgent", warmer)
    assert updated.config.temperature == pytest.approx(0.2)
    assert (updated.config.model, updated.config.max_tokens) == ("claude-3-opus", 777)
    # the service ignores status on update: never answered as if it had changed
    pause = agent_pb2.UpdateAgentRequest(
        agent_id=agent.id,
        agent=agent_pb2.Agent(status=agent_pb2.AGENT_STATUS_INACTIVE),
        update_mask=_mask("status"),
    )
    ignored = await _refused(rpc, "AgentService", "UpdateAgent", pause)
    assert ignored.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = details_of(ignored)["ErrorInfo"]
    assert (info.reason, info.metadata["field"]) == ("UPSTREAM_IGNORED_FIELD", "status")
    run = await rpc(
        "AgentService",
        "RunAgent",
        agent_pb2.RunAgentRequest(agent_id=agent.id, message="What is 2 + 2?"),
    )
    assert run.content
    events = await rpc.stream(
        "AgentService",
        "StreamAgentRun",
        agent_pb2.StreamAgentRunRequest(agent_id=agent.id, message="What is 2 + 2?"),
    )
    # the service answers JSON whatever `stream` says: one completed event
    assert [e.WhichOneof("event") for e in events] == ["run_completed"]
    assert events[0].run_completed.content == run.content
    return agent


async def _workflows_and_runs(rpc: Recorder, agent: agent_pb2.Agent) -> None:
    steps = [
        workflow_pb2.WorkflowStep(
            id="research",
            name="Research",
            agent_id=agent.id,
            input_template="Topic: {{inputs.topic}}",
            timeout_ms=30_000,
        ),
        workflow_pb2.WorkflowStep(
            id="publish",
            name="Publish",
            action="publish",
            depends_on=["research"],
            condition="research.status == 'completed'",
            timeout_ms=60_000,  # the service's default, so that both sides compare equal
        ),
    ]
    created = await rpc(
        "WorkflowService",
        "CreateWorkflow",
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(
                name="Pipeline", steps=steps, triggers=[_struct(type="schedule", cron="0 9 * * *")]
            )
        ),
    )
    got = await rpc(
        "WorkflowService", "GetWorkflow", workflow_pb2.GetWorkflowRequest(workflow_id=created.id)
    )
    assert list(got.steps) == steps  # every field of the deployed step shape, both ways
    assert got.triggers[0]["cron"] == "0 9 * * *"
    await rpc("WorkflowService", "ListWorkflows", workflow_pb2.ListWorkflowsRequest())
    renamed = workflow_pb2.UpdateWorkflowRequest(
        workflow_id=created.id,
        workflow=workflow_pb2.Workflow(description="new"),
        update_mask=_mask("description"),
    )
    assert (await rpc("WorkflowService", "UpdateWorkflow", renamed)).description == "new"
    run = await rpc(
        "WorkflowService",
        "TriggerWorkflow",
        workflow_pb2.TriggerWorkflowRequest(workflow_id=created.id, input=_struct(topic="AI")),
    )
    assert (run.workflow_id, run.input["topic"]) == (created.id, "AI")
    assert run.status == execution_pb2.EXECUTION_STATUS_RUNNING
    runs = await rpc(
        "WorkflowService",
        "ListWorkflowRuns",
        workflow_pb2.ListWorkflowRunsRequest(workflow_id=created.id),
    )
    assert ([r.id for r in runs.data], runs.total, runs.limit) == ([run.id], 1, 20)
    # a run of the deployed service is not an execution: nothing to watch, said plainly
    watch = execution_pb2.WatchExecutionRequest(execution_id=run.id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc.stream("ExecutionService", "WatchExecution", watch)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    get = execution_pb2.GetExecutionRequest(execution_id=run.id)
    missing = await _refused(rpc, "ExecutionService", "GetExecution", get)
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    await rpc(
        "WorkflowService",
        "DeleteWorkflow",
        workflow_pb2.DeleteWorkflowRequest(workflow_id=created.id),
    )


async def _executions(rpc: Recorder, agent: agent_pb2.Agent) -> None:
    listed = await rpc(
        "ExecutionService", "ListExecutions", execution_pb2.ListExecutionsRequest(limit=10)
    )
    execution = next(e for e in listed.data if e.agent_id == agent.id)
    got = await rpc(
        "ExecutionService",
        "GetExecution",
        execution_pb2.GetExecutionRequest(execution_id=execution.id),
    )
    assert got.agent_id == agent.id
    assert got.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    logs = await rpc(
        "ExecutionService",
        "GetExecutionLogs",
        execution_pb2.GetExecutionLogsRequest(execution_id=execution.id, limit=1),
    )
    assert (logs.execution_id, len(logs.data), logs.limit) == (execution.id, 1, 1)
    assert logs.total >= 1
    assert logs.data[0].message
    finished = await _refused(
        rpc,
        "ExecutionService",
        "CancelExecution",
        execution_pb2.CancelExecutionRequest(execution_id=execution.id),
    )
    assert finished.code() is grpc.StatusCode.INVALID_ARGUMENT  # the service's 400


async def _webhooks(rpc: Recorder) -> None:
    hook = await rpc(
        "WebhookService",
        "CreateWebhook",
        webhook_pb2.CreateWebhookRequest(
            webhook=webhook_pb2.Webhook(
                url="https://hooks.example.com/gagiteck",
                events=["execution.completed"],
                secret="whsec_x",
                active=False,
            )
        ),
    )
    assert hook.HasField("active")
    assert hook.active is False  # is_active reached the service, and came back
    assert hook.failure_count == 0
    listed = await rpc("WebhookService", "ListWebhooks", webhook_pb2.ListWebhooksRequest())
    assert (listed.total, listed.limit, [w.id for w in listed.data]) == (1, 20, [hook.id])
    await rpc("WebhookService", "GetWebhook", webhook_pb2.GetWebhookRequest(webhook_id=hook.id))
    on = webhook_pb2.UpdateWebhookRequest(
        webhook_id=hook.id, webhook=webhook_pb2.Webhook(active=True), update_mask=_mask("active")
    )
    assert (await rpc("WebhookService", "UpdateWebhook", on)).active is True
    events = await rpc(
        "WebhookService", "ListWebhookEvents", webhook_pb2.ListWebhookEventsRequest()
    )
    assert "execution.completed" in events.events
    delivery = await rpc(
        "WebhookService", "TestWebhook", webhook_pb2.TestWebhookRequest(webhook_id=hook.id)
    )
    assert delivery.message == "Test webhook queued"
    assert delivery.event_id.startswith("evt_")
    await rpc(
        "WebhookService", "DeleteWebhook", webhook_pb2.DeleteWebhookRequest(webhook_id=hook.id)
    )


async def _search(rpc: Recorder) -> None:
    found = await rpc("SearchService", "Search", search_pb2.SearchRequest(q="support", limit=5))
    assert found.query == "support"
    assert [(r.type, r.name) for r in found.data] == [("agent", "Support Bot")]
    assert found.total == 1
    assert found.data[0].created_at.seconds > 0
    suggested = await rpc(
        "SearchService", "GetSearchSuggestions", search_pb2.GetSearchSuggestionsRequest(q="supp")
    )
    assert [(s.text, s.type) for s in suggested.suggestions] == [("Support Bot", "agent")]


async def _access(rpc: Recorder) -> None:
    roles = await rpc("AccessService", "ListRoles", access_pb2.ListRolesRequest())
    admin = next(r for r in roles.data if r.id == "role_admin")
    assert admin.is_system
    assert {g.resource for g in admin.grants} >= {"agents", "workflows"}
    by_key = await rpc("AccessService", "GetRole", access_pb2.GetRoleRequest(role_id="admin"))
    assert by_key.id == "role_admin"
    by_id = await _refused(
        rpc, "AccessService", "GetRole", access_pb2.GetRoleRequest(role_id="role_admin")
    )
    assert by_id.code() is grpc.StatusCode.NOT_FOUND  # the service keys built-ins by name
    grants = [access_pb2.Permission(resource="agents", actions=["read", "execute"])]
    custom = await rpc(
        "AccessService",
        "CreateRole",
        access_pb2.CreateRoleRequest(role=access_pb2.Role(name="Runner", grants=grants)),
    )
    assert list(custom.grants) == grants
    described = access_pb2.UpdateRoleRequest(
        role_id=custom.id,
        role=access_pb2.Role(description="runs agents"),
        update_mask=_mask("description"),
    )
    assert (await rpc("AccessService", "UpdateRole", described)).description == "runs agents"
    permissions = await rpc("AccessService", "ListPermissions", access_pb2.ListPermissionsRequest())
    assert "execute" in permissions.resources["agents"]["actions"]
    empty = await rpc("AccessService", "GetTeam", access_pb2.GetTeamRequest())
    assert (empty.message, len(empty.members)) == ("No team configured", 0)
    member = await rpc(
        "AccessService",
        "InviteTeamMember",
        access_pb2.InviteTeamMemberRequest(email="bob@example.com", role_id="developer"),
    )
    assert member.status == access_pb2.MEMBER_STATUS_INVITED  # `pending`
    assert (member.role.name, member.message) == ("Developer", "Invitation sent to bob@example.com")
    team = await rpc("AccessService", "GetTeam", access_pb2.GetTeamRequest())
    assert [(m.email, m.role.id) for m in team.members] == [("bob@example.com", "role_developer")]
    promote = access_pb2.UpdateTeamMemberRequest(
        member_id=member.id,
        member=access_pb2.TeamMember(role_id="admin"),
        update_mask=_mask("role_id"),
    )
    promoted = await rpc("AccessService", "UpdateTeamMember", promote)
    assert promoted.message == "Member role updated"  # role_id went in the query
    team = await rpc("AccessService", "GetTeam", access_pb2.GetTeamRequest())
    assert team.members[0].role.id == "role_admin"
    await rpc(
        "AccessService", "RemoveTeamMember", access_pb2.RemoveTeamMemberRequest(member_id=member.id)
    )
    await rpc("AccessService", "DeleteRole", access_pb2.DeleteRoleRequest(role_id=custom.id))
