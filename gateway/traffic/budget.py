"""How many retries the gateway allows across all calls: a share of the calls plus a floor."""

from __future__ import annotations

import math

from gateway.clock import Clock


class RetryBudget:
    """Retries allowed across all calls: at most ``ratio`` of the calls plus a floor.

    The exact rule: a retry is allowed when, counting the current and the previous
    ``slots - 1`` slots of ``window / slots`` seconds each (by default the last 10 whole
    seconds, the current one included),

        retries + 1 <= ratio * calls + min_per_second * window

    where ``calls`` counts :meth:`record_call` (one per call, not per attempt) and
    ``retries`` counts the retries allowed by :meth:`try_spend`. The floor lets quiet
    services retry every failure; the ratio keeps a failing upstream from seeing more than
    ``1 + ratio`` times the traffic once calls outnumber the floor. It is the rule of
    Finagle's RetryBudget and in the spirit of gRPC's retry throttling.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        slots: int = 10,
    ) -> None:
        if not (ratio >= 0 and min_per_second >= 0 and window > 0 and slots >= 1):
            raise ValueError("ratio and min_per_second >= 0, window > 0 and slots >= 1")
        self.clock = clock
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self.slots = slots
        self._slot_length = window / slots
        self._calls = [0] * slots
        self._retries = [0] * slots
        self._current = self._slot_index()
        self._current_ends = (self._current + 1) * self._slot_length
        """When the current slot ends: until then a call is one addition (no division)."""
        self.spent = 0
        """Retries allowed so far (a counter for metrics)."""
        self.denied = 0
        """Retries refused so far (a counter for metrics)."""

    def record_call(self) -> None:
        if self.clock.monotonic() >= self._current_ends:
            self._advance()
        self._calls[self._current % self.slots] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget, or say no (and count the refusal)."""
        self._advance()
        allowed = self.ratio * sum(self._calls) + self.min_per_second * self.window
        if sum(self._retries) + 1 > allowed:
            self.denied += 1
            return False
        self._retries[self._current % self.slots] += 1
        self.spent += 1
        return True

    def _slot_index(self) -> int:
        return math.floor(self.clock.monotonic() / self._slot_length)

    def _advance(self) -> None:
        index = self._slot_index()
        if index <= self._current:
            return
        for passed in range(self._current + 1, min(index, self._current + self.slots) + 1):
            self._calls[passed % self.slots] = 0
            self._retries[passed % self.slots] = 0
        self._current = index
        self._current_ends = (index + 1) * self._slot_length
