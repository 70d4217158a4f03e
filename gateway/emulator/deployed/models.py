"""The request and answer models of the deployed service (FastAPI 0.2.1), as declarations.

Names, members, types, required lists and defaults are those the service publishes
at /openapi.json; the handlers validate bodies with these same objects.
"""

from __future__ import annotations

from .schema import (
    AnyValue,
    Array,
    Bool,
    DateTime,
    Dict,
    Either,
    Email,
    Float,
    Int,
    Model,
    Nullable,
    PlainObject,
    Prop,
    Ref,
    Str,
    Url,
)

TEXT = Str()
OPTIONAL_TEXT = Nullable(Str())
WHEN = DateTime()
OPTIONAL_WHEN = Nullable(DateTime())
NAMES = Array(Str())
FREE = Dict()
FREE_LIST = Array(Dict())

# --- errors -------------------------------------------------------------------------------

VALIDATION_ERROR = Model(
    "ValidationError",
    (
        Prop("loc", Array(Either((Str(), Int()))), required=True),
        Prop("msg", TEXT, required=True),
        Prop("type", TEXT, required=True),
        Prop("input", AnyValue()),
        Prop("ctx", PlainObject()),
    ),
)
HTTP_VALIDATION_ERROR = Model(
    "HTTPValidationError", (Prop("detail", Array(Ref(VALIDATION_ERROR))),)
)

# --- health -------------------------------------------------------------------------------

HEALTH = Model(
    "HealthResponse",
    (
        Prop("status", TEXT, required=True),
        Prop("version", TEXT, required=True),
        Prop("database", TEXT, default="connected"),
        Prop("redis", TEXT, default="connected"),
    ),
)

# --- authentication -----------------------------------------------------------------------

USER_CREATE = Model(
    "UserCreate",
    (
        Prop("email", Email(), required=True),
        Prop("password", Str(min_length=8), required=True),
        Prop("name", Str(min_length=1, max_length=100), required=True),
    ),
)
USER_LOGIN = Model(
    "UserLogin", (Prop("email", Email(), required=True), Prop("password", TEXT, required=True))
)
USER = Model(
    "User",
    (
        Prop("id", TEXT, required=True),
        Prop("email", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("role", TEXT, default="user"),
        Prop("created_at", WHEN, required=True),
        Prop("updated_at", WHEN, required=True),
    ),
)
USER_UPDATE = Model("UserUpdate", (Prop("name", OPTIONAL_TEXT),))
PASSWORD_CHANGE = Model(
    "PasswordChange",
    (
        Prop("current_password", TEXT, required=True),
        Prop("new_password", Str(min_length=8), required=True),
    ),
)
TOKEN = Model(
    "Token",
    (
        Prop("access_token", TEXT, required=True),
        Prop("token_type", TEXT, default="bearer"),
        Prop("expires_in", Int(), required=True),
    ),
)
API_KEY_CREATE = Model(
    "APIKeyCreate", (Prop("name", Str(min_length=1, max_length=100), required=True),)
)
API_KEY = Model(
    "APIKey",
    (
        Prop("id", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("key", TEXT, required=True),
        Prop("created_at", WHEN, required=True),
    ),
)

# --- agents -------------------------------------------------------------------------------

DEFAULT_MODEL = "claude-3-sonnet"
AGENT_CONFIG = Model(
    "AgentConfig",
    (
        Prop("model", TEXT, default=DEFAULT_MODEL),
        Prop("max_tokens", Int(ge=1, le=100_000), default=4096),
        Prop("temperature", Float(ge=0, le=2), default=0.7),
        Prop("max_iterations", Int(ge=1, le=100), default=25),
        Prop("timeout_ms", Int(ge=1000, le=600_000), default=120_000),
    ),
)
AGENT_CREATE = Model(
    "AgentCreate",
    (
        Prop("name", Str(min_length=1, max_length=100), required=True),
        Prop("system_prompt", OPTIONAL_TEXT),
        Prop("config", Nullable(Ref(AGENT_CONFIG))),
        Prop("tools", NAMES, default=[]),
        Prop("metadata", FREE, default={}),
    ),
)
AGENT_UPDATE = Model(
    "AgentUpdate",
    (
        Prop("name", OPTIONAL_TEXT),
        Prop("system_prompt", OPTIONAL_TEXT),
        Prop("config", Nullable(Ref(AGENT_CONFIG))),
        Prop("tools", Nullable(NAMES)),
        Prop("metadata", Nullable(FREE)),
    ),
)
AGENT = Model(
    "Agent",
    (
        Prop("id", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("system_prompt", OPTIONAL_TEXT),
        Prop("config", Ref(AGENT_CONFIG), required=True),
        Prop("tools", NAMES, default=[]),
        Prop("metadata", FREE, default={}),
        Prop("status", TEXT, default="active"),
        Prop("created_at", WHEN, required=True),
        Prop("updated_at", WHEN, required=True),
    ),
)
AGENT_LIST = Model(
    "AgentList",
    (
        Prop("data", Array(Ref(AGENT)), required=True),
        Prop("total", Int(), required=True),
        Prop("limit", Int(), required=True),
        Prop("offset", Int(), required=True),
    ),
)
AGENT_RUN_REQUEST = Model(
    "AgentRunRequest",
    (
        Prop("message", Str(min_length=1), required=True),
        Prop("context", Nullable(FREE)),
        Prop("stream", Bool(), default=False),
    ),
)
AGENT_RUN_RESPONSE = Model(
    "AgentRunResponse",
    (
        Prop("id", TEXT, required=True),
        Prop("agent_id", TEXT, required=True),
        Prop("content", TEXT, required=True),
        Prop("model", TEXT, required=True),
        Prop("tool_calls", FREE_LIST, default=[]),
        Prop("usage", FREE, default={}),
        Prop("created_at", WHEN, required=True),
    ),
)

# --- workflows ----------------------------------------------------------------------------

WORKFLOW_STEP = Model(
    "WorkflowStep",
    (
        Prop("id", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("agent_id", OPTIONAL_TEXT),
        Prop("action", OPTIONAL_TEXT),
        Prop("input_template", OPTIONAL_TEXT),
        Prop("depends_on", NAMES, default=[]),
        Prop("condition", OPTIONAL_TEXT),
        Prop("timeout_ms", Int(), default=60_000),
    ),
)
STEPS = Array(Ref(WORKFLOW_STEP))
WORKFLOW_CREATE = Model(
    "WorkflowCreate",
    (
        Prop("name", Str(min_length=1, max_length=100), required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("steps", STEPS, default=[]),
        Prop("triggers", FREE_LIST, default=[]),
        Prop("metadata", FREE, default={}),
    ),
)
WORKFLOW_UPDATE = Model(
    "WorkflowUpdate",
    (
        Prop("name", OPTIONAL_TEXT),
        Prop("description", OPTIONAL_TEXT),
        Prop("steps", Nullable(STEPS)),
        Prop("triggers", Nullable(FREE_LIST)),
        Prop("metadata", Nullable(FREE)),
    ),
)
WORKFLOW = Model(
    "Workflow",
    (
        Prop("id", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("steps", STEPS, default=[]),
        Prop("triggers", FREE_LIST, default=[]),
        Prop("metadata", FREE, default={}),
        Prop("status", TEXT, default="active"),
        Prop("created_at", WHEN, required=True),
        Prop("updated_at", WHEN, required=True),
    ),
)
WORKFLOW_LIST = Model(
    "WorkflowList",
    (
        Prop("data", Array(Ref(WORKFLOW)), required=True),
        Prop("total", Int(), required=True),
        Prop("limit", Int(), required=True),
        Prop("offset", Int(), required=True),
    ),
)
WORKFLOW_TRIGGER = Model("WorkflowTriggerRequest", (Prop("inputs", FREE, default={}),))
WORKFLOW_RUN = Model(
    "WorkflowRunResponse",
    (
        Prop("id", TEXT, required=True),
        Prop("workflow_id", TEXT, required=True),
        Prop("status", TEXT, required=True),
        Prop("inputs", FREE, required=True),
        Prop("outputs", FREE, default={}),
        Prop("started_at", WHEN, required=True),
    ),
)

# --- executions ---------------------------------------------------------------------------

STEP_RESULT = Model(
    "StepResult",
    (
        Prop("step_id", TEXT, required=True),
        Prop("status", TEXT, required=True),
        Prop("output", OPTIONAL_TEXT),
        Prop("error", OPTIONAL_TEXT),
        Prop("started_at", OPTIONAL_WHEN),
        Prop("completed_at", OPTIONAL_WHEN),
        Prop("duration_ms", Int(), default=0),
    ),
)
EXECUTION = Model(
    "Execution",
    (
        Prop("id", TEXT, required=True),
        Prop("workflow_id", OPTIONAL_TEXT),
        Prop("agent_id", OPTIONAL_TEXT),
        Prop("status", TEXT, required=True),
        Prop("inputs", FREE, default={}),
        Prop("outputs", FREE, default={}),
        Prop("step_results", Array(Ref(STEP_RESULT)), default=[]),
        Prop("started_at", WHEN, required=True),
        Prop("completed_at", OPTIONAL_WHEN),
        Prop("duration_ms", Int(), default=0),
    ),
)
EXECUTION_LIST = Model(
    "ExecutionList",
    (
        Prop("data", Array(Ref(EXECUTION)), required=True),
        Prop("total", Int(), required=True),
        Prop("limit", Int(), required=True),
        Prop("offset", Int(), required=True),
    ),
)

# --- webhooks -----------------------------------------------------------------------------

WEBHOOK_CREATE = Model(
    "WebhookCreate",
    (
        Prop("url", Url(), required=True),
        Prop("events", NAMES, required=True),
        Prop("secret", OPTIONAL_TEXT),
        Prop("description", OPTIONAL_TEXT),
        Prop("is_active", Bool(), default=True),
    ),
)
WEBHOOK_UPDATE = Model(
    "WebhookUpdate",
    (
        Prop("url", Nullable(Url())),
        Prop("events", Nullable(NAMES)),
        Prop("secret", OPTIONAL_TEXT),
        Prop("description", OPTIONAL_TEXT),
        Prop("is_active", Nullable(Bool())),
    ),
)
WEBHOOK = Model(
    "Webhook",
    (
        Prop("id", TEXT, required=True),
        Prop("url", TEXT, required=True),
        Prop("events", NAMES, required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("is_active", Bool(), default=True),
        Prop("created_at", WHEN, required=True),
        Prop("updated_at", WHEN, required=True),
        Prop("last_triggered_at", OPTIONAL_WHEN),
        Prop("failure_count", Int(), default=0),
    ),
)
WEBHOOK_LIST = Model(
    "WebhookList",
    (Prop("data", Array(Ref(WEBHOOK)), required=True), Prop("total", Int(), required=True)),
)

# --- search -------------------------------------------------------------------------------

SEARCH_RESULT = Model(
    "SearchResult",
    (
        Prop("id", TEXT, required=True),
        Prop("type", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("status", TEXT, required=True),
        Prop("created_at", WHEN, required=True),
        Prop("score", Float(), required=True),
    ),
)
SEARCH_RESPONSE = Model(
    "SearchResponse",
    (
        Prop("query", TEXT, required=True),
        Prop("results", Array(Ref(SEARCH_RESULT)), required=True),
        Prop("total", Int(), required=True),
        Prop("took_ms", Float(), required=True),
    ),
)

# --- access control -----------------------------------------------------------------------

PERMISSION = Model(
    "Permission", (Prop("resource", TEXT, required=True), Prop("actions", NAMES, required=True))
)
PERMISSIONS = Array(Ref(PERMISSION))
ROLE_CREATE = Model(
    "RoleCreate",
    (
        Prop("name", Str(min_length=1, max_length=50), required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("permissions", PERMISSIONS, required=True),
    ),
)
ROLE_UPDATE = Model(
    "RoleUpdate",
    (
        Prop("name", OPTIONAL_TEXT),
        Prop("description", OPTIONAL_TEXT),
        Prop("permissions", Nullable(PERMISSIONS)),
    ),
)
ROLE = Model(
    "Role",
    (
        Prop("id", TEXT, required=True),
        Prop("name", TEXT, required=True),
        Prop("description", OPTIONAL_TEXT),
        Prop("permissions", PERMISSIONS, required=True),
        Prop("is_system", Bool(), default=False),
        Prop("created_at", WHEN, required=True),
        Prop("updated_at", WHEN, required=True),
    ),
)
TEAM_MEMBER_CREATE = Model(
    "TeamMemberCreate", (Prop("email", TEXT, required=True), Prop("role_id", TEXT, required=True))
)
