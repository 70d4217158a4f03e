"""Requests the emulator makes itself (webhook deliveries, `webhook` workflow steps).

Only loopback hosts are contacted for real; anything else is left to the
caller to simulate, so that tests never reach the outside world.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OutboundResult:
    status: int | None
    body: bytes
    duration_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    seconds: float,
) -> OutboundResult:
    """One request; transport failures become an `error`, never an exception."""
    started = time.perf_counter()
    try:
        async with session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as response:
            payload = await response.read()
            return OutboundResult(response.status, payload, _elapsed(started), None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        return OutboundResult(None, b"", _elapsed(started), reason)


def _elapsed(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
