"""What the deployed dialect keeps, and the JSON it answers for each record.

The deployed service has no notion of an owner: agents, workflows, runs,
webhooks, roles and the team are shared by every caller, and lists come back
in the order of creation (oldest first). Users, API keys, agent runs and
executions stay in the emulator's own `Store` (under the account `SHARED` for
what is shared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ..clock import render_time, utcnow
from ..config import TimestampStyle
from ..resources import Agent, ApiKey, Execution, Json, StepResult, User

SHARED = "deployed"
SERVICE_TITLE = "Gagiteck AI SaaS Platform"
SERVICE_VERSION = "0.2.1"


def when(moment: datetime | None, style: TimestampStyle) -> str | None:
    return render_time(moment, style)


@dataclass
class DeployedAgent:
    id: str
    name: str
    system_prompt: str | None
    config: Json
    tools: list[str]
    metadata: Json
    status: str = "active"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.updated_at = self.created_at

    def engine_agent(self) -> Agent:
        """The record the run engine understands (a prompt of None reads as empty)."""
        return Agent(
            self.id,
            SHARED,
            self.name,
            self.system_prompt or "",
            dict(self.config),
            list(self.tools),
            dict(self.metadata),
            self.status,
        )

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "system_prompt": self.system_prompt,
            "config": dict(self.config),
            "tools": list(self.tools),
            "metadata": dict(self.metadata),
            "status": self.status,
            "created_at": when(self.created_at, style),
            "updated_at": when(self.updated_at, style),
        }


@dataclass
class DeployedWorkflow:
    id: str
    name: str
    description: str | None
    steps: list[Json]
    triggers: list[Json]
    metadata: Json
    status: str = "active"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.updated_at = self.created_at

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "steps": [dict(step) for step in self.steps],
            "triggers": [dict(trigger) for trigger in self.triggers],
            "metadata": dict(self.metadata),
            "status": self.status,
            "created_at": when(self.created_at, style),
            "updated_at": when(self.updated_at, style),
        }


@dataclass
class WorkflowRun:
    """A trigger of a workflow. The deployed service starts nothing: it stays `running`."""

    id: str
    workflow_id: str
    inputs: Json
    status: str = "running"
    outputs: Json = field(default_factory=dict)
    started_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "inputs": dict(self.inputs),
            "outputs": dict(self.outputs),
            "started_at": when(self.started_at, style),
        }


@dataclass
class DeployedWebhook:
    id: str
    url: str
    events: list[str]
    secret: str | None
    description: str | None
    is_active: bool = True
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(init=False)
    last_triggered_at: datetime | None = None
    failure_count: int = 0

    def __post_init__(self) -> None:
        self.updated_at = self.created_at

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "is_active": self.is_active,
            "created_at": when(self.created_at, style),
            "updated_at": when(self.updated_at, style),
            "last_triggered_at": when(self.last_triggered_at, style),
            "failure_count": self.failure_count,
        }


@dataclass
class DeployedRole:
    id: str
    name: str
    description: str | None
    permissions: list[Json]
    is_system: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.updated_at = self.created_at

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "permissions": [
                {"resource": grant["resource"], "actions": list(grant["actions"])}
                for grant in self.permissions
            ],
            "is_system": self.is_system,
            "created_at": when(self.created_at, style),
            "updated_at": when(self.updated_at, style),
        }


@dataclass
class DeployedTeam:
    id: str
    name: str
    owner_id: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class DeployedMember:
    id: str
    team_id: str
    email: str
    role_id: str
    name: str | None = None
    status: str = "pending"
    invited_at: datetime = field(default_factory=utcnow)
    joined_at: datetime | None = None


@dataclass
class Lockout:
    """Failed logins of one address, and until when it is refused."""

    failures: int = 0
    locked_until: datetime | None = None


_CRUD = ["create", "read", "update", "delete"]
_BUILD = [*_CRUD, "execute"]
# (key, id, name, description, permissions): the built-in roles, keyed by their short names.
_SYSTEM_ROLES: tuple[tuple[str, str, str, str, tuple[tuple[str, list[str]], ...]], ...] = (
    (
        "admin",
        "role_admin",
        "Admin",
        "Full access to all resources",
        (
            ("agents", _BUILD),
            ("workflows", _BUILD),
            ("executions", ["read", "cancel"]),
            ("webhooks", _CRUD),
            ("settings", ["read", "update"]),
            ("team", _CRUD),
        ),
    ),
    (
        "developer",
        "role_developer",
        "Developer",
        "Can create and manage agents and workflows",
        (
            ("agents", _BUILD),
            ("workflows", _BUILD),
            ("executions", ["read", "cancel"]),
            ("webhooks", _CRUD),
            ("settings", ["read"]),
        ),
    ),
    (
        "viewer",
        "role_viewer",
        "Viewer",
        "Read-only access to resources",
        (
            ("agents", ["read"]),
            ("workflows", ["read"]),
            ("executions", ["read"]),
            ("webhooks", ["read"]),
        ),
    ),
    (
        "operator",
        "role_operator",
        "Operator",
        "Can execute agents and workflows, view results",
        (
            ("agents", ["read", "execute"]),
            ("workflows", ["read", "execute"]),
            ("executions", ["read", "cancel"]),
        ),
    ),
)

PERMISSION_CATALOGUE: dict[str, tuple[str, list[str]]] = {
    "agents": ("AI agents management", _BUILD),
    "workflows": ("Workflow management", _BUILD),
    "executions": ("Execution monitoring", ["read", "cancel"]),
    "webhooks": ("Webhook configuration", _CRUD),
    "settings": ("Account settings", ["read", "update"]),
    "team": ("Team management", _CRUD),
}


def system_roles() -> dict[str, DeployedRole]:
    """The four built-in roles, stored under `admin`, `developer`, … (not under their ids)."""
    return {
        key: DeployedRole(
            ident,
            name,
            description,
            [{"resource": resource, "actions": list(actions)} for resource, actions in grants],
            is_system=True,
        )
        for key, ident, name, description, grants in _SYSTEM_ROLES
    }


@dataclass
class DeployedData:
    """Everything the deployed dialect keeps besides users, keys, runs and executions."""

    agents: dict[str, DeployedAgent] = field(default_factory=dict)
    workflows: dict[str, DeployedWorkflow] = field(default_factory=dict)
    workflow_runs: dict[str, WorkflowRun] = field(default_factory=dict)
    webhooks: dict[str, DeployedWebhook] = field(default_factory=dict)
    roles: dict[str, DeployedRole] = field(default_factory=system_roles)
    team: DeployedTeam | None = None
    members: dict[str, DeployedMember] = field(default_factory=dict)
    lockouts: dict[str, Lockout] = field(default_factory=dict)


# --- records of the emulator's own store, in the deployed shapes -------------------------


def user_json(user: User, style: TimestampStyle) -> Json:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "created_at": when(user.created_at, style),
        "updated_at": when(user.updated_at, style),
    }


def api_key_json(key: ApiKey, style: TimestampStyle, shown: str) -> Json:
    return {
        "id": key.id,
        "name": key.name,
        "key": shown,
        "created_at": when(key.created_at, style),
    }


def _millis(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return int((end - start).total_seconds() * 1000)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def step_result_json(step: StepResult, style: TimestampStyle) -> Json:
    return {
        "step_id": step.step_id,
        "status": step.status,
        "output": _as_text(step.output),
        "error": step.error,
        "started_at": when(step.started_at, style),
        "completed_at": when(step.completed_at, style),
        "duration_ms": _millis(step.started_at, step.completed_at),
    }


def _outputs(result: Any) -> Json:
    if isinstance(result, dict):
        return dict(result)
    return {} if result is None else {"result": result}


def execution_started(execution: Execution) -> datetime:
    """When an execution started; one not yet started reads as its first log entry."""
    if execution.started_at is not None:
        return execution.started_at
    return execution.logs[0].timestamp if execution.logs else utcnow()


def execution_json(execution: Execution, style: TimestampStyle) -> Json:
    started = execution_started(execution)
    return {
        "id": execution.id,
        "workflow_id": execution.resource_id if execution.type == "workflow" else None,
        "agent_id": execution.resource_id if execution.type == "agent" else None,
        "status": execution.status,
        "inputs": dict(execution.input),
        "outputs": _outputs(execution.result),
        "step_results": [step_result_json(step, style) for step in execution.step_results],
        "started_at": when(started, style),
        "completed_at": when(execution.completed_at, style),
        "duration_ms": _millis(started, execution.completed_at),
    }
