"""JSON values ↔ protobuf scalars and well-known types, read tolerantly.

The REST API's answers come from a FastAPI service, so reading them is tolerant where
``json_format.Parse`` is strict: numbers given as strings are accepted, and so are scalars
of the wrong kind where the meaning is unambiguous; timestamps without an offset are UTC;
a value of the wrong shape is dropped (:data:`SKIP`), never fatal. The decoders here are the
leaves of :class:`gateway.transcoding.codec.MessageCodec`'s compiled trees.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

SKIP: Final = object()
"""Returned by a field decoder when the value must be left out (null, wrong shape)."""

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]

INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
UINT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
INT32_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_FIXED32,
    }
)

TIMESTAMP = "google.protobuf.Timestamp"
STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
LIST_VALUE = "google.protobuf.ListValue"
FIELD_MASK = "google.protobuf.FieldMask"
EMPTY = "google.protobuf.Empty"
WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)

_TS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_TS_MAX = 253402300799  # 9999-12-31T23:59:59Z


# --------------------------------------------------------------------------- scalars


def to_int(bits: int, unsigned: bool) -> Decoder:
    low = 0 if unsigned else -(1 << (bits - 1))
    high = (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1

    def decode(value: Any) -> Any:
        if type(value) is int:
            n = value
        elif isinstance(value, bool):
            n = int(value)
        elif isinstance(value, float):
            if not value.is_integer():
                return SKIP
            n = int(value)
        elif isinstance(value, str):
            try:
                n = int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    return SKIP
                if not f.is_integer():
                    return SKIP
                n = int(f)
        else:
            return SKIP
        return n if low <= n <= high else SKIP

    return decode


def to_float(value: Any) -> Any:
    if type(value) is float or type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return SKIP
    if isinstance(value, bool):
        return float(value)
    return SKIP


def to_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        return SKIP
    if isinstance(value, int | float):
        return bool(value)
    return SKIP


def to_str(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        check_depth(value)  # deeper than orjson writes: TooDeep, an unreadable answer
        return orjson.dumps(value).decode()
    return SKIP


def to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            padded = value + "=" * (-len(value) % 4)
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            return SKIP
    return SKIP


def parse_timestamp(value: Any) -> timestamp_pb2.Timestamp | None:
    """Read an ISO 8601 time (with or without offset; no offset means UTC) or Unix seconds."""
    parts: tuple[int, int] | None
    if isinstance(value, str):
        parts = _iso_common(value) if len(value) <= 32 else None
        if parts is None:
            parts = _iso_any(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parts = _unix_seconds(value)
    else:
        return None
    if parts is None or not _TS_MIN <= parts[0] <= _TS_MAX:
        return None
    return timestamp_pb2.Timestamp(seconds=parts[0], nanos=parts[1])


_EPOCH: Final = datetime(1970, 1, 1)


def _iso_common(value: str) -> tuple[int, int] | None:
    """(seconds, nanos) by the fast path, for what FastAPI and most APIs emit (up to 6
    fraction digits); None when the value needs the general reader."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    dot = value.find(".", 10)
    if dot != -1:
        tail = value[dot + 1 :]
        if len(tail) - len(tail.lstrip("0123456789")) > 6:
            return None
    offset = moment.utcoffset()
    try:
        if offset is not None:
            moment = moment.replace(tzinfo=None) - offset
        since = moment - _EPOCH  # naive arithmetic: a third of what .timestamp() costs
    except OverflowError:
        return None
    return since.days * 86_400 + since.seconds, moment.microsecond * 1000


def _iso_any(value: str) -> tuple[int, int] | None:
    """(seconds, nanos) of any ISO 8601 time, nanoseconds included."""
    text = value.strip()
    if not text:
        return None
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    nanos_text = ""
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        nanos_text = text[dot + 1 : end]
        text = text[:dot] + text[end:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    nanos = int((nanos_text + "000000000")[:9]) if nanos_text else 0
    return int(moment.timestamp()), nanos


def _unix_seconds(value: float) -> tuple[int, int] | None:
    if not math.isfinite(value):
        return None
    seconds = math.floor(value)
    nanos = round((value - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, 0
    return seconds, nanos


def decode_timestamp(value: Any) -> Any:
    ts = parse_timestamp(value)
    return SKIP if ts is None else ts


class BadValue(ValueError):
    """A value of the caller's message that has no JSON form (e.g. a Timestamp outside
    years 1-9999): the request cannot be made."""


MIN_TIMESTAMP_SECONDS: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z


def format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC; BadValue for what google.protobuf.Timestamp does not allow."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        raise BadValue(f"a Timestamp's seconds must be within years 1-9999, not {ts.seconds}")
    if not 0 <= ts.nanos <= 999_999_999:
        raise BadValue(f"a Timestamp's nanos must be 0-999999999, not {ts.nanos}")
    moment = datetime.fromtimestamp(ts.seconds, tz=UTC).replace(tzinfo=None)
    base = moment.isoformat(timespec="seconds")
    if ts.nanos:
        frac = f"{ts.nanos:09d}".rstrip("0")
        return f"{base}.{frac}Z"
    return f"{base}Z"


def _json_safe(value: Any) -> Any:
    """A JSON value as Struct accepts it (non-finite floats and odd types dropped)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return None


MAX_FREE_FORM_DEPTH: Final = 32
"""Deepest JSON a free-form field (Struct, Value, ListValue) may carry. Each JSON level is
two protobuf levels (Struct → Value), and gRPC clients refuse messages nested deeper than
100 (the protobuf parsers' default), so deeper JSON could not reach a caller anyway."""


class TooDeep(Exception):
    """A free-form JSON value nested deeper than :data:`MAX_FREE_FORM_DEPTH`."""


def check_depth(value: Any) -> None:
    """Raise TooDeep when ``value`` nests deeper than the limit (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_FREE_FORM_DEPTH:
            raise TooDeep(f"free-form JSON nested deeper than {MAX_FREE_FORM_DEPTH} levels")
        if type(item) is dict:
            pending.extend((v, depth + 1) for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            pending.extend((v, depth + 1) for v in item if type(v) in (dict, list))


def decode_struct(value: Any) -> Any:
    """Parsed JSON objects go to the constructor as they are (upb builds the Struct);
    values it refuses send the message down :meth:`MessageCodec._decode_slowly`."""
    if type(value) is not dict:
        return SKIP
    check_depth(value)
    return value


def decode_list_value(value: Any) -> Any:
    if not isinstance(value, list):
        return SKIP
    check_depth(value)
    return struct_pb2.ListValue(values=[_value_of(v) for v in value])


def _value_of(value: Any) -> struct_pb2.Value:
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
        return struct_pb2.Value(number_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if isinstance(value, dict):
        return struct_pb2.Value(struct_value=_json_safe(value))
    if isinstance(value, list):
        items = struct_pb2.ListValue(values=[_value_of(v) for v in value])
        return struct_pb2.Value(list_value=items)
    return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)


def decode_value(value: Any) -> Any:
    if type(value) in (dict, list):
        check_depth(value)
    return _value_of(value)


def value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_python(value.struct_value)
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    if kind == "number_value":
        n = value.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def struct_to_python(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {k: value_to_python(v) for k, v in struct.fields.items()}
