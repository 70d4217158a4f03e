"""Logging set-up: one JSON object a line, or plain text for people.

Both formatters end with the :class:`~gateway.telemetry.redaction.Redactor`: whatever a record holds
— an upstream's message, an exception's text, a traceback — credentials are replaced
before the line is written. The JSON formatter checks the finished line first (a few
substring tests) and redacts field by field only when something looks suspicious, so the
JSON stays valid and clean lines cost next to nothing.

The access log (``gateway.access``, one line per call) is written by
:mod:`gateway.telemetry.server`; its fields are ``method``, ``code``, ``duration_ms``,
``upstream_status``, ``attempts``, ``request_id``, ``trace_id`` and ``span_id`` (and
``messages`` for streams). Its records are clean by construction (the one caller-supplied
field, the request id, is redacted when the record is built) and say so with ``_clean``, so
the formatter does not scan them again: a line per call has to stay cheap.

Lines are written in batches (:class:`BatchingStreamHandler`): a line at WARNING or above
goes out at once, together with every line before it; the others (the access log's
INFO lines) within :data:`FLUSH_INTERVAL` seconds, or as soon as 64 KiB are waiting. One
write per batch instead of one per call matters more than it seems: every write releases
the GIL, and gRPC's poller thread takes it, so the event loop waits for it back.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import IO, Any, Final

import orjson

from gateway.telemetry.redaction import Redactor, redact

FLUSH_INTERVAL: Final = 0.2
"""Seconds an INFO line may wait in the buffer before it is written."""
FLUSH_BYTES: Final = 64 * 1024
"""Characters waiting that cause a write at once."""

_LEVEL_NAMES: Final = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}

_RESERVED: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__()
        self.redact = redactor
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def clean_line(
        self, created: float, level: int, logger: str, message: str, fields: Mapping[str, Any]
    ) -> str:
        """The line :meth:`format` writes for a clean record with these fields (all of
        them the gateway's own or redacted already), without making the record."""
        entry: dict[str, Any] = {
            "time": self._time(created),
            "level": _LEVEL_NAMES[level],
            "logger": logger,
            "message": message,
        }
        entry.update(fields)
        return orjson.dumps(entry, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        if getattr(record, "_clean", False) or self.redact(line) == line:
            return line
        clean = _redacted(entry, self.redact)
        return orjson.dumps(clean, default=lambda v: self.redact(str(v))).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__()
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _RESERVED and not k.startswith("_")
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line if getattr(record, "_clean", False) else self.redact(line)


def _redacted(value: Any, redact: Redactor) -> Any:
    """``value`` with every string in it redacted (dictionaries and lists included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


def formatter(fmt: str, redactor: Redactor = redact) -> logging.Formatter:
    return JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor)


class BatchingStreamHandler(logging.StreamHandler[IO[str]]):
    """A stream handler that writes lines in batches (see the module's docstring).

    A daemon thread, started with the first line that waits, flushes every
    :data:`FLUSH_INTERVAL` seconds; ``flush()`` and ``close()`` (which ``logging.shutdown``
    calls at exit) write what is waiting. Before a fork the buffer is written, so a child
    never repeats its parent's lines, and the child starts its own flusher when it needs one.
    """

    def __init__(self, stream: IO[str], interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(stream)
        self.interval = interval
        self._lines: list[str] = []
        self._waiting = 0
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()
        _BATCHING.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # logging.Handler.handle holds self.lock around this
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._append(line, record.levelno, record)

    def write_clean(self, level: int, logger: str, message: str, fields: Mapping[str, Any]) -> None:
        """Write a clean record's line as :meth:`emit` would, without the record (the
        caller has checked with :func:`direct_sink` that nothing else would see it)."""
        formatter = self.formatter
        assert isinstance(formatter, JsonFormatter)
        line = formatter.clean_line(time.time(), level, logger, message, fields)
        self.acquire()
        try:
            self._append(line, level)
        finally:
            self.release()

    def _append(self, line: str, level: int, record: logging.LogRecord | None = None) -> None:
        """Add a line (the lock held): written at once when it is a WARNING or above or
        the buffer is full, else by the flusher."""
        self._lines.append(line)
        self._waiting += len(line)
        if level >= logging.WARNING or self._waiting >= FLUSH_BYTES:
            self._write(record)
        elif self._flusher is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=self._flush_every_interval, name="log-flusher", daemon=True
        )
        self._flusher.start()

    def _write(self, record: logging.LogRecord | None = None) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._waiting = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            if record is not None:
                self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def close(self) -> None:
        self._stop_flusher.set()
        self.flush()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._stop_flusher.wait(self.interval):
            self.flush()

    def _after_fork_in_child(self) -> None:
        self._flusher = None  # the parent's thread does not exist here


def direct_sink(logger: logging.Logger, level: int) -> BatchingStreamHandler | None:
    """The one handler a record of ``logger`` at ``level`` would reach, when that handler
    is a :class:`BatchingStreamHandler` writing JSON and no filter is on the way; else
    None (a test's capture, or any handler added by whoever embeds the gateway, gets
    records as usual)."""
    found: BatchingStreamHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BatchingStreamHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
                or level < handler.level
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


_BATCHING: Final[weakref.WeakSet[BatchingStreamHandler]] = weakref.WeakSet()


def _flush_before_fork() -> None:
    for handler in list(_BATCHING):
        handler.flush()


def _after_fork_in_child() -> None:
    for handler in list(_BATCHING):
        handler._after_fork_in_child()


os.register_at_fork(before=_flush_before_fork, after_in_child=_after_fork_in_child)


def setup_logging(level: str, fmt: str, redactor: Redactor = redact) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, redactor))
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, BatchingStreamHandler):
            previous.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    # Nothing written uses them; not collecting them makes every record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
