"""How many streams and watches each caller may hold open in this process.

A stream or a watch holds resources for as long as it is open (a connection of the
stream pool, a poller, a place in the watchers' fan-out), whatever its caller's rate. One
caller must not hold them all: :class:`OpenStreams` counts each caller key's open
streams and watches and refuses one more past ``per_caller`` with RESOURCE_EXHAUSTED,
reason ``GATEWAY_STREAM_LIMIT``, a QuotaFailure naming the caller's bucket and no
RetryInfo (the wait is the caller's own: until one of its streams ends).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from gateway.errors import FailureReason, Refused
from gateway.traffic.limits import caller_subject


class OpenStreams:
    """Counts open streams per caller key; ``per_caller`` of 0 counts without a cap."""

    __slots__ = ("_open", "per_caller", "refused")

    def __init__(self, per_caller: int) -> None:
        if per_caller < 0:
            raise ValueError("per_caller must not be negative")
        self.per_caller = per_caller
        self.refused = 0
        self._open: dict[str, int] = {}

    def held(self, caller: str) -> int:
        """The streams and watches ``caller`` holds open now."""
        return self._open.get(caller, 0)

    @contextlib.contextmanager
    def hold(self, caller: str, what: str) -> Iterator[None]:
        """Hold one of ``caller``'s places for the ``what`` (stream, watch) inside."""
        if not caller:
            yield
            return
        count = self._open.get(caller, 0)
        if self.per_caller and count >= self.per_caller:
            self.refused += 1
            subject = caller_subject(caller)
            raise Refused(
                f"{subject} already holds {count} open streams and watches, the most a "
                f"caller may; end one before opening this {what}",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                FailureReason.GATEWAY_STREAM_LIMIT,
                quota_subject=subject,
                metadata={"bucket": subject, "limit": str(self.per_caller)},
            )
        self._open[caller] = count + 1
        try:
            yield
        finally:
            left = self._open[caller] - 1
            if left:
                self._open[caller] = left
            else:
                del self._open[caller]
