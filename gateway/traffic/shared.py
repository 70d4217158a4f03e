"""The rate-limit buckets in Redis, shared by every gateway process.

:class:`RedisLimiter` implements :class:`~gateway.traffic.limits.Limiter` with the same GCRA
as :class:`~gateway.traffic.limits.LocalLimiter`, run as one Lua script so that checking and
spending the global and the caller's bucket is a single atomic step, whatever the number of
gateway processes. The script reads Redis's own clock (``TIME``), so the processes' clocks
need not agree; it stores one number per bucket (the theoretical arrival time, in
microseconds) that expires once the bucket is full again. Keys::

    gagiteck-gateway:{rl}:global
    gagiteck-gateway:{rl}:caller:<the caller key: a salted digest, hex>

(the ``{rl}`` hash tag keeps a call's keys in one Redis Cluster slot, as a multi-key script
needs). The script is sent with EVALSHA and, when Redis answers NOSCRIPT (after a restart
or ``SCRIPT FLUSH``), once with EVAL, which caches it again.

When Redis is unreachable
-------------------------
The limiter **fails open, but bounded**: it admits through a local fallback limiter that
holds this process's *share* of each quota (rate and burst divided by the number of gateway
processes), so the fleet as a whole stays within the quota it would have had with Redis.
The number of processes is not set by hand: every process registers itself in Redis
(``…:{rl}:members``, a sorted set of member ids scored by when they expire) every
``heartbeat`` seconds and learns how many are alive, so the share follows an autoscaler;
while Redis is unreachable the last count seen holds (``replicas`` is only the guess before
Redis is first reached). It never admits without a limit and never stalls calls on a dead
Redis:

* every Redis call is bounded by ``timeout`` (default 100 ms; a stopped or partitioned Redis
  costs a call at most that once);
* after a failure the limiter stops asking Redis for ``retry_interval`` seconds (default 1 s),
  then lets a single call probe it while the others keep using the fallback;
* the change of state is logged once each way (warning when Redis is lost, info when it is
  back) and counted in :attr:`RedisLimiter.stats`.

The connections to Redis are a bounded pool (``max_connections``; a call that finds them
all busy waits at most ``timeout``, then counts as a Redis failure). After any failure the
idle connections are closed at once — after a Redis restart they are all dead, and would
otherwise hold their sockets until next used — and every ``idle_timeout`` seconds the idle
ones are closed anyway, so the pool shrinks back after a peak (the next calls reconnect).

Failing closed (refusing every call) would turn a Redis outage into a gateway outage;
failing open without a bound would let N replicas send N times the quota into the
upstream's 429s. A caller whose calls all reach one process (a gRPC channel sticks to one
connection) gets only that process's share of its own quota while Redis is down: the
fallback errs on the side of the upstream's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from gateway.clock import Clock
from gateway.traffic.limits import (
    GLOBAL_BUCKET,
    Limiter,
    LocalLimiter,
    RateLimit,
    caller_subject,
    refusal,
)

log = logging.getLogger("gateway.redis_limits")

DEFAULT_NAMESPACE: Final = "gagiteck-gateway"
_MICROS: Final = 1_000_000
_REFUSED: Final = 0
_OWN_ONLY: Final = 2

# KEYS: the buckets. ARGV[1]: the longest wait the caller accepts in microseconds (-1: no
# limit); ARGV[2]: the index of the caller's own bucket among KEYS (0: none); then for each
# key its increment and its tolerance in microseconds.
# Returns {outcome, wait in microseconds, index of the bucket that decided the wait, then
#          per reserved key: the new TAT and the previous TAT (for a refund)}, where outcome
# is 0 (refused: nothing spent), 1 (every key reserved for now + wait) or 2 (only the
# caller's own bucket reserved, for now + wait: call again with the others once it is due,
# so that a caller over its own rate never books the shared buckets ahead of others).
GCRA_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local own = tonumber(ARGV[2])
local n = #KEYS
local tats = {}
local whens = {}
local at = now
local limiting = 1
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  whens[i] = tat + tonumber(ARGV[2 * i + 1]) - tonumber(ARGV[2 * i + 2])
  if whens[i] > at then
    at = whens[i]
    limiting = i
  end
end
local wait = at - now
if wait > 0 and max_wait >= 0 and wait >= max_wait then
  return {0, math.floor(wait), limiting}
end
local first = 1
local last = n
local outcome = 1
if own > 0 and whens[own] > now then
  at = whens[own]
  wait = at - now
  limiting = own
  first = own
  last = own
  outcome = 2
end
local out = {outcome, math.floor(wait), limiting}
for i = first, last do
  local base = tats[i]
  if at > base then base = at end
  local new = base + tonumber(ARGV[2 * i + 1])
  local text = string.format('%.0f', new)
  redis.call('SET', KEYS[i], text, 'PX', math.floor((new - now) / 1000) + 1000)
  out[#out + 1] = text
  out[#out + 1] = string.format('%.0f', tats[i])
end
return out
"""

# KEYS[1]: the members. ARGV[1]: this member's id; ARGV[2]: how long its registration
# lasts in milliseconds. Registers the member, forgets the expired ones, returns the count.
MEMBERS_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: the buckets. ARGV: per key, the TAT this reservation set and the one before it.
# A reservation is given back only where no later one was made on top of it.
REFUND_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2 * i - 1] then
    local previous = tonumber(ARGV[2 * i])
    if previous <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], ARGV[2 * i], 'PX', math.floor((previous - now) / 1000) + 1000)
    end
  end
end
return 0
"""


@dataclass
class RedisLimiterStats:
    """Counters for metrics; read them, never reset them."""

    admitted: int = 0
    """Calls admitted by Redis (each may have taken one or two script calls)."""
    redis_calls: int = 0
    redis_errors: int = 0
    fallback_calls: int = 0
    refused: int = 0
    refunds: int = 0


@dataclass(frozen=True, slots=True)
class _Bucket:
    name: str
    key: str
    limit: RateLimit


class RedisLimiter:
    """GCRA buckets in Redis; a local share of the quota while Redis cannot be reached."""

    def __init__(
        self,
        client: Redis,
        clock: Clock,
        fallback: Limiter,
        global_limit: RateLimit | None = None,
        caller_limit: RateLimit | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 0.1,
        retry_interval: float = 1.0,
        idle_timeout: float = 30.0,
        heartbeat: float = 5.0,
        replicas: int = 1,
    ) -> None:
        self.client = client
        self.clock = clock
        self.fallback = fallback
        self.global_limit = global_limit
        self.caller_limit = caller_limit
        self.prefix = f"{namespace}:{{rl}}:"
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.idle_timeout = idle_timeout
        self.heartbeat = heartbeat
        self.members = replicas
        """Live gateway processes sharing the quota (the last count Redis gave)."""
        self.member_id = os.urandom(12).hex()
        self.stats = RedisLimiterStats()
        self._reaper: asyncio.Task[None] | None = None
        self._down = False
        self._retry_at = 0.0
        self._probing = False
        self._background: set[asyncio.Task[None]] = set()
        self._shas = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            for script in (GCRA_SCRIPT, REFUND_SCRIPT, MEMBERS_SCRIPT)
        }

    async def acquire(self, key: str, cost: float, deadline: float | None) -> None:
        buckets = self._buckets_for(key)
        if not buckets:
            return
        if self._reaper is None:
            self.start()
        if not self._may_ask_redis(self.clock.monotonic()):
            self.stats.fallback_calls += 1
            await self.fallback.acquire(key, cost, deadline)
            return
        try:
            reply = await self._ask(buckets, cost, deadline)
        except (RedisError, OSError, TimeoutError) as error:
            self._lost(error)
            self.stats.fallback_calls += 1
            await self.fallback.acquire(key, cost, deadline)
            return
        except asyncio.CancelledError:
            self._probing = False
            raise
        self._reached()
        if int(reply[0]) != _OWN_ONLY:
            await self._settle(reply, buckets, deadline)
            self.stats.admitted += 1
            return
        # Only the caller's own bucket was reserved: wait for it, then ask for the rest.
        own, rest = buckets[-1:], buckets[:-1]
        await self._settle(reply, own, deadline)
        if not rest:
            self.stats.admitted += 1
            return
        try:
            second = await self._ask(rest, cost, deadline)
        except (RedisError, OSError, TimeoutError) as error:
            # The caller's own bucket is spent in Redis; the shared ones are judged by
            # this process's share while Redis is away.
            self._lost(error)
            self.stats.fallback_calls += 1
            await self.fallback.acquire("", cost, deadline)
            return
        except BaseException:
            self._spawn(self._refund([b.key for b in own], list(reply[3:])))
            raise
        try:
            await self._settle(second, rest, deadline)
        except BaseException:
            self._spawn(self._refund([b.key for b in own], list(reply[3:])))
            raise
        self.stats.admitted += 1

    async def _ask(self, buckets: Sequence[_Bucket], cost: float, deadline: float | None) -> Any:
        now = self.clock.monotonic()
        max_wait = -1 if deadline is None else max(int((deadline - now) * _MICROS), 0)
        own = 0 if buckets[-1].name == GLOBAL_BUCKET else len(buckets)  # the caller's is last
        args: list[int] = [max_wait, own]
        for bucket in buckets:
            limit = bucket.limit
            args += [
                _micros(min(cost, limit.burst) / limit.rate),
                _micros(limit.burst / limit.rate),
            ]
        return await self._run(GCRA_SCRIPT, [bucket.key for bucket in buckets], args)

    def start(self) -> None:
        """Begin the upkeep: register this process among the members every ``heartbeat``
        seconds (and at once), close idle connections every ``idle_timeout`` seconds."""
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._upkeep())

    async def aclose(self) -> None:
        """Leave the members, finish pending refunds and close the Redis connections
        (safe to call twice)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self.client.zrem(self._members_key, self.member_id)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.client.aclose()

    @property
    def _members_key(self) -> str:
        return self.prefix + "members"

    async def _upkeep(self) -> None:
        idle_since = self.clock.monotonic()
        while True:
            await self._register()
            await self.clock.sleep(self.heartbeat)
            if self.clock.monotonic() - idle_since >= self.idle_timeout:
                await self._close_idle()
                idle_since = self.clock.monotonic()

    async def _register(self) -> None:
        """Count the live members and give the fallback this process's share."""
        ttl = _micros(3 * self.heartbeat) // 1000
        try:
            count = int(await self._run(MEMBERS_SCRIPT, [self._members_key], [self.member_id, ttl]))
        except (RedisError, OSError, TimeoutError):
            return  # the last count holds while Redis is away
        if count >= 1 and count != self.members:
            self.members = count
            if isinstance(self.fallback, LocalLimiter):
                self.fallback.set_limits(
                    None if self.global_limit is None else self.global_limit.share(count),
                    None if self.caller_limit is None else self.caller_limit.share(count),
                )

    async def _close_idle(self) -> None:
        """Close the pool's idle connections (the pool makes new ones when needed)."""
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    # ---------------------------------------------------------------- internals

    def _buckets_for(self, key: str) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        if self.global_limit is not None:
            buckets.append(_Bucket(GLOBAL_BUCKET, self.prefix + GLOBAL_BUCKET, self.global_limit))
        if key and self.caller_limit is not None:
            name = caller_subject(key)
            buckets.append(_Bucket(name, f"{self.prefix}caller:{key}", self.caller_limit))
        return buckets

    async def _settle(self, reply: Any, buckets: Sequence[_Bucket], deadline: float | None) -> None:
        admitted, wait = int(reply[0]) != _REFUSED, int(reply[1]) / _MICROS
        if not admitted:
            self.stats.refused += 1
            subject = buckets[int(reply[2]) - 1].name
            left = 0.0 if deadline is None else deadline - self.clock.monotonic()
            raise refusal(subject, wait, left)
        if wait <= 0:
            return
        try:
            await self.clock.sleep(wait)
        except asyncio.CancelledError:
            self._spawn(self._refund([b.key for b in buckets], list(reply[3:])))
            raise

    async def _refund(self, keys: list[str], tats: list[Any]) -> None:
        try:
            await self._run(REFUND_SCRIPT, keys, tats)
            self.stats.refunds += 1
        except (RedisError, OSError, TimeoutError):
            pass  # the reservation stays spent: conservative

    async def _run(self, script: str, keys: list[str], args: Sequence[Any]) -> Any:
        self.stats.redis_calls += 1
        async with asyncio.timeout(self.timeout):
            try:
                return await self.client.evalsha(self._shas[script], len(keys), *keys, *args)
            except NoScriptError:
                return await self.client.eval(script, len(keys), *keys, *args)

    def _may_ask_redis(self, now: float) -> bool:
        if not self._down:
            return True
        if self._probing or now < self._retry_at:
            return False
        self._probing = True
        return True

    def _lost(self, error: BaseException) -> None:
        self.stats.redis_errors += 1
        self._spawn(self._close_idle())
        self._probing = False
        self._retry_at = self.clock.monotonic() + self.retry_interval
        if not self._down:
            self._down = True
            log.warning(
                "redis unreachable: admitting with this process's share of the quota",
                extra={"error": type(error).__name__, "retry_in_s": self.retry_interval},
            )

    def _reached(self) -> None:
        self._probing = False
        if self._down:
            self._down = False
            log.info("redis reachable again: shared rate limits resumed")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _micros(seconds: float) -> int:
    return max(round(seconds * _MICROS), 0)


def redis_client(url: str, timeout: float = 0.1, max_connections: int = 32) -> Redis:
    """A client that fails fast: bounded connect and reads, at most ``max_connections``
    connections (waiting at most ``timeout`` for one). A command whose connection turns out
    dead (Redis restarted since it was pooled) is sent once more on a new connection; a
    timeout is never repeated."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=0,
    )
    client: Redis = Redis.from_pool(pool)
    return client


def shared_limiter(
    url: str,
    clock: Clock,
    global_limit: RateLimit | None,
    caller_limit: RateLimit | None,
    *,
    replicas: int,
    namespace: str = DEFAULT_NAMESPACE,
    timeout: float = 0.1,
    retry_interval: float = 1.0,
    max_callers: int = 10_000,
) -> RedisLimiter:
    """A Redis limiter whose fallback holds 1/``replicas`` of each quota until Redis tells
    how many processes are alive (then 1/that)."""
    fallback = LocalLimiter(
        clock,
        None if global_limit is None else global_limit.share(replicas),
        None if caller_limit is None else caller_limit.share(replicas),
        max_callers=max_callers,
    )
    return RedisLimiter(
        redis_client(url, timeout),
        clock,
        fallback,
        global_limit,
        caller_limit,
        namespace=namespace,
        timeout=timeout,
        retry_interval=retry_interval,
        replicas=replicas,
    )
