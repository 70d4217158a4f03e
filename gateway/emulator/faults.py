"""Fault injection: the run-time holder of `Faults` and its per-request decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import Faults

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Decision:
    """What to do to one request; at most one of the failure modes is chosen."""

    delay: float = 0.0
    error: bool = False
    html: bool = False
    drop_before: bool = False
    drop_after: bool = False
    truncate: bool = False


NO_FAULT = Decision()


class FaultInjector:
    """Holds the current `Faults` and one seedable random generator."""

    def __init__(self, faults: Faults) -> None:
        self._rng = random.Random(faults.seed)
        self.faults = faults

    def set(self, faults: Faults) -> None:
        """Replace the knobs; a `seed` restarts the random sequence."""
        self.faults = faults
        if faults.seed is not None:
            self._rng.seed(faults.seed)

    def decide(self, method: str, path: str) -> Decision:
        """Draw jitter, error, malformed and drop, always in that order."""
        faults = self.faults
        if not faults.active or not faults.applies_to(method, path):
            return NO_FAULT
        delay = faults.latency_seconds + self._rng.random() * faults.jitter_seconds
        error = self._rng.random() < faults.error_rate
        malformed = self._rng.random() < faults.malformed_rate
        drop = self._rng.random() < faults.drop_rate
        return _choose(faults, delay, error, malformed, drop)


def _choose(faults: Faults, delay: float, error: bool, malformed: bool, drop: bool) -> Decision:
    if error:
        return Decision(delay, error=True)
    if malformed:
        html = faults.malformed_mode == "html"
        return Decision(delay, html=html, truncate=not html)
    if drop:
        before = faults.drop_mode == "before"
        return Decision(delay, drop_before=before, drop_after=not before)
    return Decision(delay)


def truncate_json(body: bytes) -> bytes:
    """A JSON text cut short so that no parser accepts it."""
    if len(body) < 2:
        return b'{"data": ['
    return body[: len(body) // 2]
