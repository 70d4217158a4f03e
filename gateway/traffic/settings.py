"""What traffic control is configured with: limits, queue, retries, breaker."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.traffic.limits import CostTable, RateLimit
from gateway.traffic.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    global_limit: RateLimit | None = None
    caller_limit: RateLimit | None = None
    costs: CostTable = field(default_factory=CostTable)
    concurrency: int = 64
    queue: int = 128
    redis_url: str | None = None
    replicas: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_budget_ratio: float = 0.2
    retry_budget_floor: float = 10.0
    breaker_failures: int = 5
    breaker_open_seconds: float = 10.0
    caller_max_streams: int = 32
