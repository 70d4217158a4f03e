"""The emulator's whole mutable state, and the handle tests inspect (`emulator.state`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from .access import new_team
from .auth import hash_password, make_api_key
from .background import Background
from .config import EmulatorConfig, Faults
from .deployed.data import DeployedData
from .faults import FaultInjector
from .idempotency import IdempotencyStore
from .ids import new_id
from .limits import ConcurrencyLimiter, RateLimiter
from .recording import RequestLog, Stats
from .resources import AgentRun, Execution, User, WebhookDelivery
from .store import Store
from .webhooks import WebhookDispatcher


class Renderable(Protocol):
    def to_json(self, style: Any) -> dict[str, Any]: ...


@dataclass
class ActiveRun:
    """A streaming agent run in progress, which `…/runs/{run_id}/cancel` can stop."""

    run: AgentRun
    execution_id: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class EmulatorState:
    """Data, counters, limits and background work of one emulator instance."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.style = config.timestamp_style
        self.dialect = config.dialect
        self.faults = FaultInjector(config.faults)
        self.session: aiohttp.ClientSession | None = None
        self.closing = asyncio.Event()
        # Streams and executions remove themselves when they end, also after a reset.
        self.open_streams = 0
        self.active_runs: dict[str, ActiveRun] = {}
        self.execution_tasks: dict[str, asyncio.Task[None]] = {}
        self._fresh()

    def _fresh(self) -> None:
        config = self.config
        self.store = Store()
        self.stats = Stats()
        self.requests = RequestLog(config.request_log_size)
        self.limiter = RateLimiter(
            config.rate_limit_per_window, config.advertised_limit, config.rate_window_seconds
        )
        self.concurrency = ConcurrencyLimiter(config.concurrency_limit)
        self.idempotency = IdempotencyStore()
        self.background = Background()
        self.webhooks = WebhookDispatcher(
            self.store,
            self.stats,
            self.background,
            self.style,
            config.outbound_timeout_seconds,
            lambda: self.session,
        )
        self.deployed = DeployedData()
        self.demo_user = self._seed_demo()

    def _seed_demo(self) -> User:
        config = self.config
        user = self.create_account(config.demo_email, config.demo_password, config.demo_name)
        for index, key in enumerate(config.api_keys, start=1):
            self.store.add_api_key(make_api_key(user.id, f"preset key {index}", key))
        return user

    def create_account(self, email: str, password: str, name: str) -> User:
        """A user with its team (the user as owner)."""
        user = self.store.add_user(
            User(new_id("user"), email.lower(), name, hash_password(password))
        )
        self.store.teams[user.id] = new_team(user)
        return user

    @property
    def open_user(self) -> User | None:
        """Who a request without a known credential acts as (open mode only)."""
        return self.demo_user if self.config.open_mode else None

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        return self.webhooks.deliveries

    def render(self, resource: Renderable) -> dict[str, Any]:
        return resource.to_json(self.style)

    def created(self, kind: str) -> None:
        self.stats.creations[kind] += 1

    def emit(self, account_id: str, event: str, resource: Renderable) -> None:
        """Announce a resource event (the deployed service never sends one)."""
        if self.dialect == "deployed":
            return
        self.webhooks.emit(account_id, event, self.render(resource))

    def executions_of(self, account_id: str) -> list[Execution]:
        return self.store.executions.of(account_id)

    def set_faults(self, faults: Faults) -> None:
        self.faults.set(faults)

    async def drain(self, seconds: float = 5.0) -> bool:
        """Wait for executions and deliveries in flight; False if some are still running."""
        return await self.background.drain(seconds)

    async def reset(self) -> None:
        """Forget everything: data, counters, faults (back to the configured ones)."""
        await self.stop_work()
        self.faults = FaultInjector(self.config.faults)
        self._fresh()

    async def stop_work(self) -> None:
        """Cancel streams, executions and deliveries (reset and shutdown)."""
        self.webhooks.closed = True
        for active in self.active_runs.values():
            active.cancelled.set()
        await self.background.cancel_all()

    def stats_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "requests": dict(sorted(stats.requests.items())),
            "requests_total": stats.requests_total,
            "open_streams": self.open_streams,
            "active_runs": len(self.active_runs),
            "creations": dict(sorted(stats.creations.items())),
            "idempotent_replays": stats.idempotent_replays,
            "rate_limited": stats.rate_limited,
            "faults_injected": dict(sorted(stats.faults.items())),
            "webhook_deliveries": stats.webhook_deliveries,
            "background_tasks": len(self.background),
        }
