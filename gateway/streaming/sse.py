"""Incremental ``text/event-stream`` parser, following the WHATWG HTML rules.

The parser implements "9.2.6 Interpreting an event stream" of the HTML standard for
bytes that arrive in chunks split at arbitrary points, and reports what it read as
:class:`Event` and :class:`Comment` items. Splitting the same bytes differently never
changes the items, their order, or whether and where an error is raised.

    SSEError                 the upstream event stream cannot be relayed
     ├── EventTooLarge       one event outgrew ``max_event_size`` (raised by ``feed``)
     └── IncompleteEvent     the stream ended inside an event (raised by ``iter_events``)

Semantics, where the standard leaves the choice to the consumer:

* ``Event.id`` is the stream's *last event ID* when the event is dispatched: it persists
  across events until an ``id`` field changes it (an empty ``id`` resets it to ``""``; a
  value containing NUL is ignored). Like the standard's EventSource, every blank line
  commits the ID buffer, even one that dispatches nothing, so ``id: 7`` followed by a
  blank line moves :attr:`SSEParser.last_event_id` without producing an event.
* ``Event.retry`` is the stream's reconnection time in milliseconds in effect when the
  event is dispatched, or ``None`` while no valid ``retry`` field has been read. It also
  persists: a ``retry`` field takes effect at once, even in a block that dispatches
  nothing, and :attr:`SSEParser.retry` always holds the current value. A value must be
  one or more ASCII digits; one too long for :func:`int` is ignored.
* Comment lines (``:`` first) become :class:`Comment` items in stream order, the moment
  their line ends; the gateway treats them as heartbeats.
* ``max_event_size`` bounds memory: it counts the UTF-8 bytes of the line being read
  (field name included, line ending excluded) plus the data the pending event holds so
  far (each ``data`` value and its newline). A comment line counts as a line too.
* A CR that ends a chunk ends its line at once, without waiting for the next chunk; an
  LF that opens the next chunk is then skipped as the second half of that CRLF. This
  yields the same items as waiting, and dispatches an event split between CR and LF
  one chunk sooner.
* At the end of the stream, an unfinished line and an event without its blank line are
  discarded, never dispatched. :meth:`SSEParser.finish` reports whether that happened:
  ``True`` when a field line (anything but a blank line or a comment, even one cut
  short) was read after the last blank line.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "Comment",
    "Event",
    "EventTooLarge",
    "IncompleteEvent",
    "Item",
    "SSEError",
    "SSEParser",
    "iter_events",
]

DEFAULT_MAX_EVENT_SIZE: Final = 1024 * 1024
"""Bytes of the line being read plus the pending event's data (see the module notes)."""

_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event; ``id`` and ``retry`` are the stream's state at dispatch."""

    type: str
    data: str
    id: str
    retry: int | None


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment line: ``text`` is everything after the leading colon, unchanged."""

    text: str


Item: TypeAlias = Event | Comment


class SSEError(Exception):
    """The upstream event stream cannot be relayed."""


class EventTooLarge(SSEError):
    """A line plus the pending event's data passed the limit; the parser is now closed.

    ``events`` holds the items read from the same chunk before the limit was reached,
    so that nothing already complete is lost.
    """

    def __init__(self, limit: int, size: int, events: list[Item]) -> None:
        super().__init__(f"event larger than {limit} bytes (reached {size} bytes)")
        self.limit = limit
        self.size = size
        self.events = events


class IncompleteEvent(SSEError):
    """The stream ended after part of an event, which was discarded."""


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class SSEParser:
    """Turns chunks of an event stream into items; one parser per stream.

    Call :meth:`feed` for each chunk and :meth:`finish` once at the end of the stream.
    """

    __slots__ = (
        "_at_start",
        "_data",
        "_data_size",
        "_decoder",
        "_finished",
        "_id_buffer",
        "_in_event",
        "_last_event_id",
        "_limit",
        "_partial",
        "_partial_size",
        "_retry",
        "_skip_lf",
        "_type",
    )

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, not {max_event_size}")
        self._limit = max_event_size
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._at_start = True  # no character decoded yet: a BOM may still come
        self._skip_lf = False  # the last line ended with a CR: an LF next completes it
        self._partial: list[str] = []  # pieces of the line being read
        self._partial_size = 0
        self._data: list[str] = []  # data values of the pending event
        self._data_size = 0
        self._type = ""
        self._id_buffer = ""
        self._last_event_id = ""
        self._retry: int | None = None
        self._in_event = False  # a field line was read since the last blank line
        self._finished: bool | None = None  # the answer of finish(), once closed

    @property
    def last_event_id(self) -> str:
        """The ID committed by the last blank line: send it as ``Last-Event-ID``."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds, or ``None`` if the stream set none."""
        return self._retry

    def feed(self, chunk: bytes) -> list[Item]:
        """Read one chunk and return the items it completed, in stream order."""
        if self._finished is not None:
            raise RuntimeError("feed() on a finished SSEParser")
        out: list[Item] = []
        self._consume(self._decoder.decode(chunk), out)
        return out

    def finish(self) -> bool:
        """End the stream; True if bytes of an incomplete event were discarded.

        Safe to call more than once: later calls give the same answer.
        """
        if self._finished is None:
            line = "".join(self._partial) + self._decoder.decode(b"", final=True)
            self._finished = self._in_event or (line[:1] not in ("", ":"))
            self._release()
        return self._finished

    def _release(self) -> None:
        self._partial = []
        self._data = []
        self._partial_size = self._data_size = 0

    def _consume(self, text: str, out: list[Item]) -> None:
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix(_BOM)
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        if not text:
            return
        if "\r" in text:
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._grow_partial(text, out)
            return
        lines = text.split("\n")
        tail = lines.pop()
        if self._partial:
            lines[0] = "".join(self._partial) + lines[0]
            self._partial = []
            self._partial_size = 0
        self._read_lines(lines, out)
        if tail:
            self._grow_partial(tail, out)

    def _grow_partial(self, text: str, out: list[Item]) -> None:
        self._partial.append(text)
        self._partial_size += _utf8_size(text)
        if self._partial_size + self._data_size > self._limit:
            self._overflow(self._partial_size, out)

    def _read_lines(self, lines: list[str], out: list[Item]) -> None:
        limit = self._limit
        for line in lines:
            if not line:
                self._dispatch(out)
                continue
            size = len(line) if line.isascii() else _utf8_size(line)
            if size + self._data_size > limit:
                self._overflow(size, out)
            if line[0] == ":":
                out.append(Comment(line[1:]))
                continue
            self._in_event = True
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                self._data.append(value)
                # The field name and separator are ASCII: the rest of the line is the value.
                self._data_size += size - (len(line) - len(value)) + 1
            else:
                self._set_field(name, value)

    def _set_field(self, name: str, value: str) -> None:
        if name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            with contextlib.suppress(ValueError):  # more digits than int() accepts
                self._retry = int(value.lstrip("0") or "0")

    def _dispatch(self, out: list[Item]) -> None:
        self._last_event_id = self._id_buffer
        if self._data:
            data = "\n".join(self._data)
            out.append(Event(self._type or "message", data, self._last_event_id, self._retry))
            self._data = []
        self._data_size = 0
        self._type = ""
        self._in_event = False

    def _overflow(self, size: int, out: list[Item]) -> None:
        total = size + self._data_size
        self._finished = True
        self._release()
        raise EventTooLarge(self._limit, total, out)


async def iter_events(
    chunks: AsyncIterable[bytes], parser: SSEParser | None = None
) -> AsyncIterator[Item]:
    """Yield the items of a chunked event stream.

    Pass your own ``parser`` to choose ``max_event_size`` or to read ``last_event_id``
    and ``retry`` for a reconnection. Raises :class:`EventTooLarge` after yielding the
    items that came before the oversized event, and :class:`IncompleteEvent` if the
    stream ended inside an event.
    """
    sse = SSEParser() if parser is None else parser
    async for chunk in chunks:
        try:
            items = sse.feed(chunk)
        except EventTooLarge as exc:
            for item in exc.events:
                yield item
            raise
        for item in items:
            yield item
    if sse.finish():
        raise IncompleteEvent("the event stream ended in the middle of an event")
