"""Log lines in batches, and the access line written without a LogRecord (issue 14).

The batching handler must lose nothing and reorder nothing: an INFO line waits at most the
flush interval, a WARNING goes out at once with every line before it, close() and a fork
write what waits. The access line's direct path must write the very line a record would.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterator

import grpc
import pytest

from gateway.telemetry.logs import BatchingStreamHandler, JsonFormatter, direct_sink
from gateway.telemetry.provider import Telemetry
from gateway.telemetry.server import RpcTelemetry

METHOD = "/gagiteck.v1.AgentService/GetAgent"


@pytest.fixture
def isolated() -> Iterator[logging.Logger]:
    """A logger tree of its own, outside logging's registry (pytest's capture handlers
    attach themselves to registered loggers): ``batching.test`` under ``batching``."""
    parent = logging.Logger("batching", logging.INFO)
    child = logging.Logger("batching.test")
    child.parent = parent
    yield child
    for handler in parent.handlers:
        handler.close()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_info_waits_a_warning_writes_everything_before_it_in_order(
    isolated: logging.Logger,
) -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    isolated.info("one")
    isolated.info("two")
    assert stream.getvalue() == ""  # waiting for the interval (a minute here)
    isolated.warning("three")
    assert [line["message"] for line in _lines(stream)] == ["one", "two", "three"]
    isolated.info("four")
    handler.close()
    assert [line["message"] for line in _lines(stream)][-1] == "four"


def test_an_info_line_is_written_within_the_interval(isolated: logging.Logger) -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=0.05)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    isolated.info("soon")
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [line["message"] for line in _lines(stream)] == ["soon"]


def test_a_full_buffer_is_written_at_once(isolated: logging.Logger) -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    for n in range(800):  # ~180 characters a line: past 64 KiB before the end
        isolated.info("line %d %s", n, "x" * 100)
    assert 0 < len(_lines(stream)) < 800


def test_a_forked_child_does_not_repeat_its_parents_lines(isolated: logging.Logger) -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    handler = BatchingStreamHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    isolated.info("before the fork")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's own process
        isolated.info("in the child")
        handler.flush()
        os._exit(0)
    os.waitpid(child, 0)
    handler.close()
    stream.close()
    with os.fdopen(read_end) as reader:
        messages = [json.loads(line)["message"] for line in reader.read().splitlines()]
    assert sorted(messages) == ["before the fork", "in the child"]


def test_the_direct_path_writes_the_line_a_record_would(isolated: logging.Logger) -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    fields = {"method": "m", "code": "OK", "duration_ms": 0.5, "request_id": "r"}
    assert direct_sink(isolated, logging.INFO) is handler
    handler.write_clean(logging.INFO, isolated.name, "call", fields)
    isolated.info("call", extra={**fields, "_clean": True})
    handler.flush()
    direct, recorded = _lines(stream)
    assert direct.pop("time")
    assert recorded.pop("time")
    assert direct == recorded
    assert list(direct) == list(recorded)  # the same order of fields too


def test_any_other_handler_or_filter_gets_records_as_usual(isolated: logging.Logger) -> None:
    handler = BatchingStreamHandler(io.StringIO(), interval=60)
    handler.setFormatter(JsonFormatter())
    isolated.parent.addHandler(handler)  # type: ignore[union-attr]
    assert direct_sink(isolated, logging.INFO) is handler
    handler.setLevel(logging.WARNING)
    assert direct_sink(isolated, logging.INFO) is None
    handler.setLevel(logging.NOTSET)
    capture = logging.Handler()
    isolated.addHandler(capture)
    assert direct_sink(isolated, logging.INFO) is None
    isolated.removeHandler(capture)
    isolated.addFilter(lambda record: True)
    assert direct_sink(isolated, logging.INFO) is None


def test_an_access_line_reaches_a_capture_as_a_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    call = RpcTelemetry(Telemetry(), METHOD, False).begin([])
    call.request_id = "req-7"
    call.end(None)
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    assert vars(record)["request_id"] == "req-7"
    assert vars(record)["code"] == grpc.StatusCode.CANCELLED.name
