"""Watch streams: a resource polled once per process, fanned out to every watcher.

A :class:`WatchHub` keeps one :class:`Poller` per (route, path, credential): a hundred
callers watching the same execution with the same credential cost one upstream poll per
interval. The interval adapts — ``min_interval`` after a change, growing by ``backoff``
while nothing changes, up to ``max_interval`` — and follows the upstream's
``Retry-After`` when it is rate limited. :meth:`WatchHub.wake` (called for verified
webhooks) makes the pollers of a resource poll at once, so webhook push turns polling
into a slow safety net.

Watchers receive every distinct state, compared by the message's serialized bytes, so an
unchanged state is never sent twice. A watcher that reads slowly gets states conflated to
the newest (each state is a full snapshot, so nothing is lost but intermediate steps).
The stream ends OK after a terminal state, or with the poll's error when it is
permanent (NOT_FOUND, PERMISSION_DENIED, …) or when transient failures persist.

A poller's requests belong to the trace of the call that started it: each poll is a
client span under that call's span (its context outlives the call if others watch on).
Each poll is one request through traffic control (breaker, upstream window, the global
bucket and a watcher's caller bucket, an upstream slot; no retries), decoded after it
returns: a caller's watches poll within the caller's own rate. Each watch holds one of its
caller's places for open streams (:mod:`gateway.traffic.open_streams`). When the gateway
drains, every watch ends with UNAVAILABLE (``GATEWAY_DRAINING``) so that its caller can
watch again on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import orjson
from google.protobuf.message import Message

from gateway.call import CallerMetadata, CallTrace, credential_digest, new_request_id
from gateway.errors import GatewayError, Refused, UpstreamHTTPError, draining
from gateway.streaming.settings import WatchSettings
from gateway.telemetry.metrics import Metrics
from gateway.traffic.control import TrafficControl
from gateway.transcoding.decode import decode_answer
from gateway.transcoding.headers import UpstreamHeaders
from gateway.transcoding.routes import Route
from gateway.transcoding.stream_rules import WatchSpec
from gateway.upstream.request import UpstreamRequest

log = logging.getLogger("gateway.watch")

_TRANSIENT: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)
_BACKLOG: Final = 16


@dataclass
class _Update:
    message: Message | None = None
    terminal: bool = False
    error: Exception | None = None


@dataclass(eq=False)
class _Watcher:
    caller: str = ""
    """The caller's key: the poller's requests are charged to one of its watchers' buckets."""
    queue: asyncio.Queue[_Update] = field(default_factory=lambda: asyncio.Queue(_BACKLOG))

    def offer(self, update: _Update) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # conflate: drop the oldest snapshot
        self.queue.put_nowait(update)


class Poller:
    """Polls one resource for all its watchers; ends with the resource or the watchers."""

    def __init__(
        self,
        hub: WatchHub,
        key: tuple[str, str, str],
        route: Route,
        spec: WatchSpec,
        path: str,
        headers: dict[str, str],
        trace: CallTrace | None = None,
    ) -> None:
        self.hub = hub
        self.trace = trace
        self.key = key
        self.route = route
        self.spec = spec
        self.path = path
        self.headers = headers
        self.resource_id = path.rstrip("/").rsplit("/", 1)[-1]
        self.watchers: set[_Watcher] = set()
        self.last: _Update | None = None
        self._last_bytes: bytes | None = None
        self._wake = asyncio.Event()
        self.polls = 0
        self.task: asyncio.Task[None] | None = None

    def add(self, watcher: _Watcher) -> None:
        self.watchers.add(watcher)
        if self.last is not None:
            watcher.offer(self.last)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        settings = self.hub.settings
        interval = settings.min_interval
        failures = 0
        try:
            while self.watchers:
                update, delay = await self._poll_once()
                if update.error is not None:
                    failures += 1
                    code = getattr(update.error, "code", None)
                    transient = code in _TRANSIENT
                    if not transient or failures >= settings.max_transient_failures:
                        self._publish(update)
                        return
                    interval = max(delay or 0.0, min(interval * 2, settings.max_interval))
                else:
                    failures = 0
                    if self._publish(update):
                        interval = settings.min_interval
                    else:
                        interval = min(interval * settings.backoff, settings.max_interval)
                    if update.terminal:
                        return
                    if delay is not None:
                        interval = max(interval, delay)
                await self._sleep(min(interval, settings.longest_wait))
        finally:
            self.hub.forget(self)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _poll_once(self) -> tuple[_Update, float | None]:
        """One GET through traffic control; the update and the delay the upstream asked for."""
        self.polls += 1
        traffic = self.hub.traffic
        headers = {**self.headers, "X-Request-ID": new_request_id()}
        request = UpstreamRequest("GET", self.path, self.route.route_template, headers)
        try:
            answer = await traffic.send(
                request,
                grpc_method=self.route.full_method,
                caller=self._charged(),
                deadline=traffic.deadline(self.hub.settings.poll_timeout),
                trace=self.trace,
                retries=False,
            )
            message = decode_answer(self.route, answer)
        except UpstreamHTTPError as exc:
            return _Update(error=exc), exc.retry_after
        except Refused as exc:
            return _Update(error=exc), exc.retry_after
        except GatewayError as exc:
            return _Update(error=exc), None
        except Exception as exc:  # a bug: the watchers get INTERNAL, not a silent hang
            log.exception("watch poll of %s failed", self.route.route_template)
            return _Update(error=exc), None
        return _Update(message=message, terminal=self._is_terminal(answer.body)), None

    def _charged(self) -> str:
        """Whose bucket pays for the next poll: one of the watchers' callers (a poller
        shared by several callers charges one of them; the first to come, while it stays)."""
        for watcher in self.watchers:
            return watcher.caller
        return ""

    def _is_terminal(self, body: bytes) -> bool:
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        value = parsed.get(self.spec.terminal_field) if isinstance(parsed, dict) else None
        return isinstance(value, str) and value.lower() in self.spec.terminal_values

    def _publish(self, update: _Update) -> bool:
        """Send to every watcher if it is new; True when something was sent."""
        if update.message is not None:
            current = update.message.SerializeToString(deterministic=True)
            if current == self._last_bytes:
                return False
            self._last_bytes = current
        self.last = update
        for watcher in self.watchers:
            watcher.offer(update)
        return True


class WatchHub:
    """The process's pollers, keyed by route, path and a hash of the credential."""

    def __init__(
        self,
        traffic: TrafficControl,
        headers: UpstreamHeaders,
        settings: WatchSettings,
        metrics: Metrics,
    ) -> None:
        self.traffic = traffic
        self.headers = headers
        self.settings = settings
        self._pollers: dict[tuple[str, str, str], Poller] = {}
        self._open = metrics.watch_open
        self._draining = False
        metrics.pollers(lambda: len(self._pollers))

    @property
    def pollers(self) -> list[Poller]:
        return list(self._pollers.values())

    def forget(self, poller: Poller) -> None:
        if self._pollers.get(poller.key) is poller:
            del self._pollers[poller.key]

    def wake(self, match: Callable[[Poller], bool]) -> int:
        """Poll now every poller that ``match`` selects; returns how many."""
        woken = 0
        for poller in self._pollers.values():
            if match(poller):
                poller.wake()
                woken += 1
        return woken

    def wake_resource(self, resource_id: str) -> int:
        return self.wake(lambda p: p.resource_id == resource_id)

    async def watch(
        self,
        route: Route,
        request: Message,
        caller: CallerMetadata,
        trace: CallTrace | None = None,
    ) -> AsyncGenerator[Message, None]:
        spec = route.watch
        assert spec is not None
        if self._draining:
            raise draining("watch")
        with self.traffic.open_streams.hold(caller.caller, "watch"):
            headers = self.headers.for_call(route.http_method, False, caller)
            path = route.build(request, headers).path
            # Watchers share a poller only when its requests would be the same: the same
            # credential and the same forwarded metadata.
            sent = headers.get("Authorization", "")
            if caller.forward:
                sent += "".join(f"\n{name}: {value}" for name, value in caller.forward)
            key = (route.full_method, path, credential_digest(sent) if sent else "")
            poller = self._pollers.get(key)
            if poller is None:
                parent = trace.detached() if trace is not None else None
                poller = Poller(self, key, route, spec, path, headers, parent)
                self._pollers[key] = poller
                poller.task = asyncio.get_running_loop().create_task(poller.run())
            elif trace is not None:
                trace.annotate("gateway.watch.shared_poller", True)
            watcher = _Watcher(caller.caller)
            poller.add(watcher)
            self._open.inc()
            try:
                while True:
                    update = await watcher.queue.get()
                    if update.error is not None:
                        raise update.error
                    assert update.message is not None
                    yield update.message
                    if update.terminal:
                        return
            finally:
                self._open.dec()
                poller.watchers.discard(watcher)
                if not poller.watchers:
                    poller.wake()  # lets it notice that nobody watches any more

    def drain(self) -> None:
        """End every watch with UNAVAILABLE (GATEWAY_DRAINING), and any opened later; the
        pollers stop (:meth:`close` waits for them)."""
        self._draining = True
        ended = _Update(error=draining("watch"))
        for poller in self._pollers.values():
            for watcher in poller.watchers:
                watcher.offer(ended)
            if poller.task is not None:
                poller.task.cancel()

    async def close(self) -> None:
        tasks = [p.task for p in self._pollers.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
