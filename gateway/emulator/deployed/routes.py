"""The deployed dialect's route table: every operation the service publishes, in its order.

`OPERATIONS` is the single source for what the dialect serves and for the
document at `GET /openapi.json` (which, as in FastAPI, does not list itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..context import Route
from ..jsonio import json_response
from ..routes import CONTROL
from . import access, agents, auth, executions, search, webhooks, workflows
from .data import SERVICE_TITLE, SERVICE_VERSION
from .models import (
    AGENT,
    AGENT_CREATE,
    AGENT_LIST,
    AGENT_RUN_REQUEST,
    AGENT_RUN_RESPONSE,
    AGENT_UPDATE,
    API_KEY,
    API_KEY_CREATE,
    EXECUTION,
    EXECUTION_LIST,
    HEALTH,
    PASSWORD_CHANGE,
    ROLE,
    ROLE_CREATE,
    ROLE_UPDATE,
    SEARCH_RESPONSE,
    TEAM_MEMBER_CREATE,
    TOKEN,
    USER,
    USER_CREATE,
    USER_LOGIN,
    USER_UPDATE,
    WEBHOOK,
    WEBHOOK_CREATE,
    WEBHOOK_LIST,
    WEBHOOK_UPDATE,
    WORKFLOW,
    WORKFLOW_CREATE,
    WORKFLOW_LIST,
    WORKFLOW_RUN,
    WORKFLOW_TRIGGER,
    WORKFLOW_UPDATE,
)
from .openapi import document
from .operations import Call, Function, Operation, Param
from .schema import AnyValue, Array, Int, Nullable, Ref, Str, Type

FREE_FORM = AnyValue()
LIMIT = Param("limit", Int(ge=1, le=100), default=20)
OFFSET = Param("offset", Int(ge=0), default=0)
PAGE = (LIMIT, OFFSET)
OPTIONAL_TEXT = Nullable(Str())


async def health_check(call: Call) -> Any:
    return {
        "status": "healthy",
        "version": SERVICE_VERSION,
        "database": "connected",
        "redis": "connected",
    }


async def root(call: Call) -> Any:
    return {"name": SERVICE_TITLE, "version": SERVICE_VERSION, "docs": "/docs"}


def _tagged(tag: str) -> Callable[..., Operation]:
    """Declares operations of one tag; an operation is named after its function."""

    def declare(
        method: str,
        path: str,
        function: Function,
        answer: Type | None,
        status: int = 200,
        **more: Any,
    ) -> Operation:
        return Operation(method, path, function.__name__, tag, function, answer, status, **more)

    return declare


health = _tagged("Health")
authn = _tagged("Authentication")
agent = _tagged("Agents")
workflow = _tagged("Workflows")
execution = _tagged("Executions")
webhook = _tagged("Webhooks")
searching = _tagged("Search")
access_control = _tagged("Access Control")
NOT_FOUND_AGENT = ((404, "Agent not found"),)

OPERATIONS: tuple[Operation, ...] = (
    health("GET", "/health", health_check, Ref(HEALTH)),
    health("GET", "/", root, FREE_FORM),
    authn("POST", "/v1/auth/signup", auth.signup, Ref(USER), 201, body=USER_CREATE),
    authn("POST", "/v1/auth/login", auth.login, Ref(TOKEN), body=USER_LOGIN),
    authn("GET", "/v1/auth/me", auth.get_me, Ref(USER), secured=True),
    authn("PATCH", "/v1/auth/me", auth.update_me, Ref(USER), body=USER_UPDATE, secured=True),
    authn(
        "POST",
        "/v1/auth/me/password",
        auth.change_password,
        Ref(USER),
        body=PASSWORD_CHANGE,
        secured=True,
    ),
    authn("GET", "/v1/auth/api-keys", auth.list_api_keys, Array(Ref(API_KEY)), secured=True),
    authn(
        "POST",
        "/v1/auth/api-keys",
        auth.create_api_key,
        Ref(API_KEY),
        201,
        body=API_KEY_CREATE,
        secured=True,
    ),
    authn("DELETE", "/v1/auth/api-keys/{key_id}", auth.delete_api_key, None, 204, secured=True),
    agent("GET", "/v1/agents", agents.list_agents, Ref(AGENT_LIST), query=PAGE),
    agent("POST", "/v1/agents", agents.create_agent, Ref(AGENT), 201, body=AGENT_CREATE),
    agent("GET", "/v1/agents/{agent_id}", agents.get_agent, Ref(AGENT), described=NOT_FOUND_AGENT),
    agent("PATCH", "/v1/agents/{agent_id}", agents.update_agent, Ref(AGENT), body=AGENT_UPDATE),
    agent("DELETE", "/v1/agents/{agent_id}", agents.delete_agent, None, 204),
    agent(
        "POST",
        "/v1/agents/{agent_id}/run",
        agents.run_agent,
        Ref(AGENT_RUN_RESPONSE),
        body=AGENT_RUN_REQUEST,
        described=NOT_FOUND_AGENT,
    ),
    workflow("GET", "/v1/workflows", workflows.list_workflows, Ref(WORKFLOW_LIST), query=PAGE),
    workflow(
        "POST", "/v1/workflows", workflows.create_workflow, Ref(WORKFLOW), 201, body=WORKFLOW_CREATE
    ),
    workflow("GET", "/v1/workflows/{workflow_id}", workflows.get_workflow, Ref(WORKFLOW)),
    workflow(
        "PATCH",
        "/v1/workflows/{workflow_id}",
        workflows.update_workflow,
        Ref(WORKFLOW),
        body=WORKFLOW_UPDATE,
    ),
    workflow("DELETE", "/v1/workflows/{workflow_id}", workflows.delete_workflow, None, 204),
    workflow(
        "POST",
        "/v1/workflows/{workflow_id}/trigger",
        workflows.trigger_workflow,
        Ref(WORKFLOW_RUN),
        body=WORKFLOW_TRIGGER,
    ),
    workflow(
        "GET",
        "/v1/workflows/{workflow_id}/runs",
        workflows.list_workflow_runs,
        Array(Ref(WORKFLOW_RUN)),
    ),
    execution(
        "GET",
        "/v1/executions",
        executions.list_executions,
        Ref(EXECUTION_LIST),
        query=(*PAGE, Param("status", OPTIONAL_TEXT)),
    ),
    execution("GET", "/v1/executions/{execution_id}", executions.get_execution, Ref(EXECUTION)),
    execution(
        "POST", "/v1/executions/{execution_id}/cancel", executions.cancel_execution, Ref(EXECUTION)
    ),
    execution(
        "GET", "/v1/executions/{execution_id}/logs", executions.get_execution_logs, FREE_FORM
    ),
    # `/events` before `/{webhook_id}`, so that it wins
    webhook("GET", "/v1/webhooks", webhooks.list_webhooks, Ref(WEBHOOK_LIST)),
    webhook(
        "POST", "/v1/webhooks", webhooks.create_webhook, Ref(WEBHOOK), 201, body=WEBHOOK_CREATE
    ),
    webhook("GET", "/v1/webhooks/events", webhooks.list_webhook_events, FREE_FORM),
    webhook("GET", "/v1/webhooks/{webhook_id}", webhooks.get_webhook, Ref(WEBHOOK)),
    webhook(
        "PATCH",
        "/v1/webhooks/{webhook_id}",
        webhooks.update_webhook,
        Ref(WEBHOOK),
        body=WEBHOOK_UPDATE,
    ),
    webhook("DELETE", "/v1/webhooks/{webhook_id}", webhooks.delete_webhook, None, 204),
    webhook("POST", "/v1/webhooks/{webhook_id}/test", webhooks.test_webhook, FREE_FORM),
    searching(
        "GET",
        "/v1/search",
        search.search,
        Ref(SEARCH_RESPONSE),
        query=(
            Param("q", Str(min_length=1, max_length=100), required=True),
            Param("types", OPTIONAL_TEXT),
            Param("status", OPTIONAL_TEXT),
            LIMIT,
        ),
    ),
    searching(
        "GET",
        "/v1/search/suggestions",
        search.search_suggestions,
        FREE_FORM,
        query=(
            Param("q", Str(min_length=1, max_length=50), required=True),
            Param("limit", Int(ge=1, le=10), default=5),
        ),
    ),
    access_control("GET", "/v1/access/roles", access.list_roles, Array(Ref(ROLE))),
    access_control(
        "POST", "/v1/access/roles", access.create_role, Ref(ROLE), 201, body=ROLE_CREATE
    ),
    access_control("GET", "/v1/access/roles/{role_id}", access.get_role, Ref(ROLE)),
    access_control(
        "PATCH", "/v1/access/roles/{role_id}", access.update_role, Ref(ROLE), body=ROLE_UPDATE
    ),
    access_control("DELETE", "/v1/access/roles/{role_id}", access.delete_role, None, 204),
    access_control("GET", "/v1/access/team", access.get_team, FREE_FORM),
    access_control(
        "POST",
        "/v1/access/team/members",
        access.invite_team_member,
        FREE_FORM,
        201,
        body=TEAM_MEMBER_CREATE,
    ),
    access_control(
        "PATCH",
        "/v1/access/team/members/{member_id}",
        access.update_team_member,
        FREE_FORM,
        query=(Param("role_id", Str(), required=True),),
    ),
    access_control(
        "DELETE", "/v1/access/team/members/{member_id}", access.remove_team_member, None, 204
    ),
    access_control("GET", "/v1/access/permissions", access.list_permissions, FREE_FORM),
)
TAGS = tuple(dict.fromkeys(operation.tag for operation in OPERATIONS))

OPENAPI_PATH = "/openapi.json"


DOCUMENT = document(OPERATIONS, TAGS)


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(DOCUMENT)


ROUTES: tuple[Route, ...] = (
    *(operation.route for operation in OPERATIONS),
    Route("GET", OPENAPI_PATH, openapi, public=True),
    *CONTROL,
)
