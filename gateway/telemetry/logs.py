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
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import orjson

from gateway.telemetry.redaction import Redactor, redact

_RESERVED: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor = redact) -> None:
        super().__init__()
        self.redact = redactor
        self._second = -1
        self._second_text = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
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


def setup_logging(level: str, fmt: str, redactor: Redactor = redact) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    # Nothing written uses them; not collecting them makes every record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
