"""In-memory tables, scoped per account, and the list/page helpers over them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .errors import not_found
from .resources import Agent, AgentRun, ApiKey, Execution, Team, User, Webhook, Workflow


class Owned(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def account_id(self) -> str: ...


T = TypeVar("T", bound=Owned)


@dataclass
class Page:
    items: list[Any]
    total: int
    limit: int
    offset: int

    def to_json(self, render: Callable[[Any], Any]) -> dict[str, Any]:
        return {
            "data": [render(item) for item in self.items],
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def paginate(items: Iterable[Any], limit: int, offset: int) -> Page:
    everything = list(items)
    return Page(everything[offset : offset + limit], len(everything), limit, offset)


@dataclass
class Table(Generic[T]):
    """Records of one kind by id; listing is newest first within an account."""

    label: str
    rows: dict[str, T] = field(default_factory=dict)

    def add(self, row: T) -> T:
        self.rows[row.id] = row
        return row

    def get(self, account_id: str, ident: str) -> T:
        row = self.rows.get(ident)
        if row is None or row.account_id != account_id:
            raise not_found(self.label, ident)
        return row

    def remove(self, account_id: str, ident: str) -> T:
        row = self.get(account_id, ident)
        del self.rows[ident]
        return row

    def of(self, account_id: str) -> list[T]:
        return [row for row in reversed(self.rows.values()) if row.account_id == account_id]


@dataclass
class Store:
    """All resources of all accounts."""

    users: dict[str, User] = field(default_factory=dict)
    user_ids_by_email: dict[str, str] = field(default_factory=dict)
    key_ids_by_hash: dict[str, str] = field(default_factory=dict)
    api_keys: Table[ApiKey] = field(default_factory=lambda: Table("API key"))
    agents: Table[Agent] = field(default_factory=lambda: Table("Agent"))
    runs: Table[AgentRun] = field(default_factory=lambda: Table("Run"))
    workflows: Table[Workflow] = field(default_factory=lambda: Table("Workflow"))
    executions: Table[Execution] = field(default_factory=lambda: Table("Execution"))
    webhooks: Table[Webhook] = field(default_factory=lambda: Table("Webhook"))
    teams: dict[str, Team] = field(default_factory=dict)

    def add_user(self, user: User) -> User:
        self.users[user.id] = user
        self.user_ids_by_email[user.email] = user.id
        return user

    def user_by_email(self, email: str) -> User | None:
        ident = self.user_ids_by_email.get(email.lower())
        return None if ident is None else self.users.get(ident)

    def add_api_key(self, key: ApiKey) -> ApiKey:
        self.key_ids_by_hash[key.key_hash] = key.id
        return self.api_keys.add(key)

    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        ident = self.key_ids_by_hash.get(key_hash)
        return None if ident is None else self.api_keys.rows.get(ident)

    def revoke_api_key(self, account_id: str, ident: str) -> ApiKey:
        key = self.api_keys.remove(account_id, ident)
        self.key_ids_by_hash.pop(key.key_hash, None)
        return key
