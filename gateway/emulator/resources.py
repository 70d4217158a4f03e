"""The records the emulator keeps, and their JSON form (docs/rest-mapping.md, Resources).

Records carry the owning `account_id`, which never appears in an answer.
Times are kept as aware datetimes and rendered in the configured style.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .clock import render_time, utcnow
from .config import TimestampStyle

Json = dict[str, Any]


@dataclass
class User:
    id: str
    email: str
    name: str
    password_hash: str
    role: str = "user"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "created_at": render_time(self.created_at, style),
        }


@dataclass
class ApiKey:
    id: str
    account_id: str
    name: str
    key_hash: str
    prefix: str
    created_at: datetime = field(default_factory=utcnow)
    last_used_at: datetime | None = None

    def to_json(self, style: TimestampStyle, key: str | None = None) -> Json:
        data: Json = {"id": self.id, "name": self.name}
        if key is not None:
            data["key"] = key
        data.update(
            prefix=self.prefix,
            created_at=render_time(self.created_at, style),
            last_used_at=render_time(self.last_used_at, style),
        )
        return data


@dataclass
class Agent:
    id: str
    account_id: str
    name: str
    system_prompt: str
    config: Json
    tools: list[str]
    metadata: Json
    status: str = "active"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "system_prompt": self.system_prompt,
            "config": dict(self.config),
            "tools": list(self.tools),
            "metadata": dict(self.metadata),
            "status": self.status,
            "created_at": render_time(self.created_at, style),
            "updated_at": render_time(self.updated_at, style),
        }


@dataclass
class AgentRun:
    id: str
    account_id: str
    agent_id: str
    model: str
    content: str = ""
    tool_calls: list[Json] = field(default_factory=list)
    usage: Json = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "content": self.content,
            "model": self.model,
            "tool_calls": list(self.tool_calls),
            "usage": dict(self.usage),
            "created_at": render_time(self.created_at, style),
        }


@dataclass
class Workflow:
    id: str
    account_id: str
    name: str
    description: str | None
    steps: list[Json]
    metadata: Json
    status: str = "active"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "steps": [dict(step) for step in self.steps],
            "status": self.status,
            "metadata": dict(self.metadata),
            "created_at": render_time(self.created_at, style),
            "updated_at": render_time(self.updated_at, style),
        }


@dataclass
class StepResult:
    step_id: str
    name: str
    status: str
    output: Any = None
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "step_id": self.step_id,
            "name": self.name,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "started_at": render_time(self.started_at, style),
            "completed_at": render_time(self.completed_at, style),
        }


@dataclass
class LogEntry:
    level: str
    message: str
    step_id: str | None = None
    timestamp: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "timestamp": render_time(self.timestamp, style),
            "level": self.level,
            "message": self.message,
            "step_id": self.step_id,
        }


FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass
class Execution:
    id: str
    account_id: str
    type: str
    resource_id: str
    input: Json
    status: str = "pending"
    result: Any = None
    error: str | None = None
    step_results: list[StepResult] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)
    started_at: datetime | None = field(default_factory=utcnow)
    completed_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def log(self, level: str, message: str, step_id: str | None = None) -> None:
        self.logs.append(LogEntry(level, message, step_id))

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "type": self.type,
            "resource_id": self.resource_id,
            "status": self.status,
            "input": self.input,
            "result": self.result,
            "error": self.error,
            "step_results": [step.to_json(style) for step in self.step_results],
            "started_at": render_time(self.started_at, style),
            "completed_at": render_time(self.completed_at, style),
        }


@dataclass
class Webhook:
    id: str
    account_id: str
    url: str
    events: list[str]
    secret: str
    description: str | None = None
    active: bool = True
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "active": self.active,
            "created_at": render_time(self.created_at, style),
            "updated_at": render_time(self.updated_at, style),
        }


@dataclass
class WebhookDelivery:
    id: str
    account_id: str
    webhook_id: str
    event: str
    event_id: str
    url: str
    attempted: bool
    success: bool = False
    status_code: int | None = None
    duration_ms: int = 0
    error: str | None = None
    payload: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delivered_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event": self.event,
            "success": self.success,
            "status_code": self.status_code,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "delivered_at": render_time(self.delivered_at, style),
        }


@dataclass
class TeamMember:
    id: str
    user_id: str | None
    email: str
    name: str | None
    role_id: str
    status: str = "invited"
    invited_at: datetime = field(default_factory=utcnow)
    joined_at: datetime | None = None

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "email": self.email,
            "name": self.name,
            "role_id": self.role_id,
            "status": self.status,
            "invited_at": render_time(self.invited_at, style),
            "joined_at": render_time(self.joined_at, style),
        }


@dataclass
class Team:
    id: str
    account_id: str
    name: str
    members: list[TeamMember]
    created_at: datetime = field(default_factory=utcnow)

    def to_json(self, style: TimestampStyle) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "members": [member.to_json(style) for member in self.members],
            "created_at": render_time(self.created_at, style),
        }
