"""The route table: every endpoint of docs/rest-mapping.md, plus the test controls.

Order matters where paths overlap: `/v1/webhooks/events` is registered
before `/v1/webhooks/{webhook_id}` so that it wins.
"""

from __future__ import annotations

from .context import Route
from .handlers import access, agents, auth, control, executions, search, webhooks, workflows

API: tuple[Route, ...] = (
    Route("POST", "/v1/auth/signup", auth.signup, public=True),
    Route("POST", "/v1/auth/login", auth.login, public=True),
    Route("GET", "/v1/auth/me", auth.me),
    Route("POST", "/v1/auth/api-keys", auth.create_api_key),
    Route("GET", "/v1/auth/api-keys", auth.list_api_keys),
    Route("DELETE", "/v1/auth/api-keys/{key_id}", auth.delete_api_key),
    Route("GET", "/v1/agents", agents.list_agents),
    Route("POST", "/v1/agents", agents.create_agent),
    Route("GET", "/v1/agents/{agent_id}", agents.get_agent),
    Route("PATCH", "/v1/agents/{agent_id}", agents.update_agent),
    Route("DELETE", "/v1/agents/{agent_id}", agents.delete_agent),
    Route("POST", "/v1/agents/{agent_id}/run", agents.run_agent),
    Route("POST", "/v1/agents/{agent_id}/runs/{run_id}/cancel", agents.cancel_run),
    Route("GET", "/v1/workflows", workflows.list_workflows),
    Route("POST", "/v1/workflows", workflows.create_workflow),
    Route("GET", "/v1/workflows/{workflow_id}", workflows.get_workflow),
    Route("PATCH", "/v1/workflows/{workflow_id}", workflows.update_workflow),
    Route("DELETE", "/v1/workflows/{workflow_id}", workflows.delete_workflow),
    Route("POST", "/v1/workflows/{workflow_id}/trigger", workflows.trigger_workflow),
    Route("GET", "/v1/workflows/{workflow_id}/runs", workflows.list_workflow_runs),
    Route("GET", "/v1/executions", executions.list_executions),
    Route("GET", "/v1/executions/{execution_id}", executions.get_execution),
    Route("POST", "/v1/executions/{execution_id}/cancel", executions.cancel_execution),
    Route("GET", "/v1/executions/{execution_id}/logs", executions.execution_logs),
    Route("GET", "/v1/webhooks", webhooks.list_webhooks),
    Route("POST", "/v1/webhooks", webhooks.create_webhook),
    Route("GET", "/v1/webhooks/events", webhooks.list_events),
    Route("GET", "/v1/webhooks/{webhook_id}", webhooks.get_webhook),
    Route("PATCH", "/v1/webhooks/{webhook_id}", webhooks.update_webhook),
    Route("DELETE", "/v1/webhooks/{webhook_id}", webhooks.delete_webhook),
    Route("POST", "/v1/webhooks/{webhook_id}/test", webhooks.test_webhook),
    Route("GET", "/v1/search", search.search_resources),
    Route("GET", "/v1/access/roles", access.list_roles),
    Route("GET", "/v1/access/team", access.get_team),
    Route("POST", "/v1/access/team/members", access.invite_member),
    Route("PATCH", "/v1/access/team/members/{member_id}", access.update_member),
    Route("DELETE", "/v1/access/team/members/{member_id}", access.delete_member),
)

CONTROL: tuple[Route, ...] = (
    Route("GET", "/_emulator/health", control.health, control=True),
    Route("GET", "/_emulator/faults", control.get_faults, control=True),
    Route("POST", "/_emulator/faults", control.set_faults, control=True),
    Route("GET", "/_emulator/stats", control.stats, control=True),
    Route("GET", "/_emulator/requests", control.recent_requests, control=True),
    Route("POST", "/_emulator/reset", control.reset, control=True),
)

ROUTES: tuple[Route, ...] = API + CONTROL
