"""JSON ↔ protobuf conversion, compiled once per message type.

The REST API speaks snake_case JSON produced by a FastAPI service, so reading its answers
has to be tolerant where ``json_format.Parse`` is strict:

* unknown fields are ignored, ``null`` or missing fields keep their defaults;
* timestamps without an offset (``2024-01-15T10:30:00.123456``) are UTC;
* numbers given as strings are accepted, and so are scalars of the wrong kind where the
  meaning is unambiguous (a number where a string is expected);
* enums are lower-case strings (``"running"`` ↔ ``EXECUTION_STATUS_RUNNING``); an
  unknown string reads as the zero value instead of failing the call;
* a value of the wrong shape (an object where a list is expected …) is dropped, not fatal.

A :class:`MessageCodec` is built once per message descriptor at start-up: every field gets
a converter closure, so a call does one dict lookup per JSON key and one protobuf
constructor call for the whole tree (nested messages are passed to the constructor as
keyword dicts, which upb builds natively).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

_SKIP: Final = object()
"""Returned by a field decoder when the value must be left out (null, wrong shape)."""

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]

_INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_UINT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_INT32_TYPES = frozenset(
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
_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)

_TS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_TS_MAX = 253402300799  # 9999-12-31T23:59:59Z


# --------------------------------------------------------------------------- scalars


def _to_int(bits: int, unsigned: bool) -> Decoder:
    low = 0 if unsigned else -(1 << (bits - 1))
    high = (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1

    def decode(value: Any) -> Any:
        if type(value) is int:
            n = value
        elif isinstance(value, bool):
            n = int(value)
        elif isinstance(value, float):
            if not value.is_integer():
                return _SKIP
            n = int(value)
        elif isinstance(value, str):
            try:
                n = int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    return _SKIP
                if not f.is_integer():
                    return _SKIP
                n = int(f)
        else:
            return _SKIP
        return n if low <= n <= high else _SKIP

    return decode


def _to_float(value: Any) -> Any:
    if type(value) is float or type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _SKIP
    if isinstance(value, bool):
        return float(value)
    return _SKIP


def _to_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        return _SKIP
    if isinstance(value, int | float):
        return bool(value)
    return _SKIP


def _to_str(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return _SKIP


def _to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            padded = value + "=" * (-len(value) % 4)
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            return _SKIP
    return _SKIP


def parse_timestamp(value: Any) -> timestamp_pb2.Timestamp | None:
    """Read an ISO 8601 time (with or without offset; no offset means UTC) or Unix seconds."""
    if type(value) is str and len(value) <= 32:
        # Fast path: what FastAPI and most APIs emit (up to 6 fraction digits).
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            dot = value.find(".", 10)
            digits = 0
            if dot != -1:
                tail = value[dot + 1 :]
                digits = len(tail) - len(tail.lstrip("0123456789"))
            if digits <= 6:
                seconds = math.floor(moment.timestamp())
                if _TS_MIN <= seconds <= _TS_MAX:
                    return timestamp_pb2.Timestamp(seconds=seconds, nanos=moment.microsecond * 1000)
                return None
    if isinstance(value, str):
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
        seconds = int(moment.timestamp())
        nanos = int((nanos_text + "000000000")[:9]) if nanos_text else 0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        seconds = math.floor(value)
        nanos = round((value - seconds) * 1e9)
        if nanos >= 1_000_000_000:
            seconds, nanos = seconds + 1, 0
    else:
        return None
    if not _TS_MIN <= seconds <= _TS_MAX:
        return None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _decode_timestamp(value: Any) -> Any:
    ts = parse_timestamp(value)
    return _SKIP if ts is None else ts


def format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
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


def _decode_struct(value: Any) -> Any:
    """Parsed JSON objects go to the constructor as they are (upb builds the Struct);
    values it refuses send the message down :meth:`MessageCodec._decode_slowly`."""
    return value if type(value) is dict else _SKIP


def _decode_list_value(value: Any) -> Any:
    return (
        struct_pb2.ListValue(values=[_value_of(v) for v in value])
        if isinstance(value, list)
        else _SKIP
    )


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


def _decode_value(value: Any) -> Any:
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


# --------------------------------------------------------------------------- enums


class EnumCodec:
    """Lower-case REST strings ↔ enum numbers (``"running"`` ↔ ``EXECUTION_STATUS_RUNNING``)."""

    __slots__ = ("by_name", "by_number")

    def __init__(self, enum: EnumDescriptor) -> None:
        prefix = _enum_prefix(enum)
        self.by_name: dict[str, int] = {}
        self.by_number: dict[int, str] = {}
        for value in enum.values:
            short = value.name[len(prefix) :] if value.name.startswith(prefix) else value.name
            rest = short.lower()
            self.by_number.setdefault(value.number, rest)
            for key in (rest, short, value.name, value.name.lower()):
                self.by_name.setdefault(key, value.number)

    def decode(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.by_name.get(value, self.by_name.get(value.lower(), 0))
        if type(value) is int:
            return value if value in self.by_number else 0
        return _SKIP

    def encode(self, number: int) -> str | int:
        return self.by_number.get(number, number)


def _enum_prefix(enum: EnumDescriptor) -> str:
    snake = []
    for i, ch in enumerate(enum.name):
        if ch.isupper() and i and (not enum.name[i - 1].isupper()):
            snake.append("_")
        snake.append(ch.upper())
    return "".join(snake) + "_"


# --------------------------------------------------------------------------- messages


class CodecRegistry:
    """Builds and caches one :class:`MessageCodec` per message type."""

    def __init__(self) -> None:
        self._codecs: dict[str, MessageCodec] = {}
        self._enums: dict[str, EnumCodec] = {}

    def codec(self, descriptor: Descriptor) -> MessageCodec:
        found = self._codecs.get(descriptor.full_name)
        if found is None:
            found = MessageCodec(descriptor, self)
            self._codecs[descriptor.full_name] = found
            found.compile()
        return found

    def enum(self, descriptor: EnumDescriptor) -> EnumCodec:
        found = self._enums.get(descriptor.full_name)
        if found is None:
            found = self._enums[descriptor.full_name] = EnumCodec(descriptor)
        return found


class MessageCodec:
    """Tolerant JSON → message, and message → REST JSON, for one message type."""

    def __init__(self, descriptor: Descriptor, registry: CodecRegistry) -> None:
        self.descriptor = descriptor
        self.cls: type[Message] = GetMessageClass(descriptor)
        self.registry = registry
        self._decoders: dict[str, tuple[str, Decoder]] = {}
        self._encoders: dict[str, Encoder] = {}

    # -- construction

    def compile(self) -> None:
        for field in self.descriptor.fields:
            decode = self._field_decoder(field)
            entry = (field.name, decode)
            self._decoders[field.name] = entry
            self._decoders.setdefault(field.json_name, entry)
            self._encoders[field.name] = self._field_encoder(field)

    def _field_decoder(self, field: FieldDescriptor) -> Decoder:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return self._map_decoder(field)
        one = self._single_decoder(field)
        if not field.is_repeated:
            return one

        def decode_list(value: Any) -> Any:
            if not isinstance(value, list):
                return _SKIP
            out = []
            for item in value:
                if item is None:
                    continue
                got = one(item)
                if got is not _SKIP:
                    out.append(got)
            return out

        return decode_list

    def _map_decoder(self, field: FieldDescriptor) -> Decoder:
        entry = _message_of(field)
        key_field = entry.fields_by_name["key"]
        value_field = entry.fields_by_name["value"]
        decode_key = self._single_decoder(key_field)
        decode_value = self._single_decoder(value_field)

        def decode_map(value: Any) -> Any:
            if not isinstance(value, dict):
                return _SKIP
            out = {}
            for k, v in value.items():
                key, val = decode_key(k), decode_value(v) if v is not None else _SKIP
                if key is not _SKIP and val is not _SKIP:
                    out[key] = val
            return out

        return decode_map

    def _single_decoder(self, field: FieldDescriptor) -> Decoder:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self._message_decoder(_message_of(field))
        if kind == FieldDescriptor.TYPE_ENUM:
            return self.registry.enum(_enum_of(field)).decode
        if kind in _INT_TYPES:
            return _to_int(32 if kind in _INT32_TYPES else 64, unsigned=False)
        if kind in _UINT_TYPES:
            return _to_int(32 if kind in _INT32_TYPES else 64, unsigned=True)
        if kind in _FLOAT_TYPES:
            return _to_float
        if kind == FieldDescriptor.TYPE_BOOL:
            return _to_bool
        if kind == FieldDescriptor.TYPE_STRING:
            return _to_str
        return _to_bytes

    def _message_decoder(self, message: Descriptor) -> Decoder:
        name = message.full_name
        if name == TIMESTAMP:
            return _decode_timestamp
        if name == STRUCT:
            return _decode_struct
        if name == VALUE:
            return _decode_value
        if name == LIST_VALUE:
            return _decode_list_value
        if name in _WRAPPERS:
            inner = self._single_decoder(message.fields_by_name["value"])

            def decode_wrapper(value: Any) -> Any:
                got = inner(value)
                return _SKIP if got is _SKIP else {"value": got}

            return decode_wrapper
        registry = self.registry
        nested: list[MessageCodec] = []  # bound on first use: types may refer to each other

        def decode_nested(value: Any) -> Any:
            if type(value) is not dict:
                return _SKIP
            if not nested:
                nested.append(registry.codec(message))
            return nested[0].kwargs(value)

        return decode_nested

    # -- decoding

    def kwargs(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments for this message from a JSON object (tolerantly)."""
        out: dict[str, Any] = {}
        decoders = self._decoders
        for key, value in obj.items():
            entry = decoders.get(key)
            if entry is None or value is None:
                continue
            got = entry[1](value)
            if got is not _SKIP:
                out[entry[0]] = got
        return out

    def decode(self, obj: Any) -> Message:
        """Build the message from parsed JSON; anything but an object gives the default."""
        if not isinstance(obj, dict):
            return self.cls()
        try:
            return self.cls(**self.kwargs(obj))
        except (TypeError, ValueError):
            return self._decode_slowly(obj)

    def _decode_slowly(self, obj: Mapping[str, Any]) -> Message:
        """Field by field, dropping what protobuf refuses (e.g. two members of a oneof)."""
        message = self.cls()
        for name, value in self.kwargs(obj).items():
            try:
                message.MergeFrom(self.cls(**{name: value}))
            except (TypeError, ValueError):
                continue
        return message

    # -- encoding

    def _field_encoder(self, field: FieldDescriptor) -> Encoder:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = _message_of(field).fields_by_name["value"]
            enc_value = self._single_encoder(value_field)
            return lambda mapping: {str(k): enc_value(v) for k, v in mapping.items()}
        one = self._single_encoder(field)
        if field.is_repeated:
            return lambda items: [one(v) for v in items]
        return one

    def _single_encoder(self, field: FieldDescriptor) -> Encoder:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self._message_encoder(_message_of(field))
        if kind == FieldDescriptor.TYPE_ENUM:
            return self.registry.enum(_enum_of(field)).encode
        if kind == FieldDescriptor.TYPE_BYTES:
            return lambda b: base64.b64encode(b).decode()
        if kind in _FLOAT_TYPES:
            return lambda f: f if math.isfinite(f) else str(f)
        return _identity

    def _message_encoder(self, message: Descriptor) -> Encoder:
        name = message.full_name
        if name == TIMESTAMP:
            return format_timestamp
        if name == STRUCT:
            return struct_to_python
        if name == VALUE:
            return value_to_python
        if name == LIST_VALUE:
            return lambda lv: [value_to_python(v) for v in lv.values]
        if name == FIELD_MASK:
            return lambda fm: ",".join(fm.paths)
        if name in _WRAPPERS:
            inner = self._single_encoder(message.fields_by_name["value"])
            return lambda w: inner(w.value)
        registry = self.registry
        return lambda m: registry.codec(message).encode(m)

    def encode(self, message: Message, skip: Iterable[str] = ()) -> dict[str, Any]:
        """The populated fields of ``message`` as REST JSON (proto field names)."""
        encoders = self._encoders
        return {
            fd.name: encoders[fd.name](value)
            for fd, value in message.ListFields()
            if fd.name not in skip
        }

    def encode_masked(self, message: Message, mask: MaskTree) -> dict[str, Any]:
        """Only the fields named by the mask, present even when they hold defaults."""
        out: dict[str, Any] = {}
        fields = self.descriptor.fields_by_name
        for name, sub in mask.items():
            field = fields[name]
            if sub is not None and field.message_type is not None:
                child = self.registry.codec(field.message_type)
                out[name] = child.encode_masked(getattr(message, name), sub)
            elif field.has_presence and not message.HasField(name):
                out[name] = None
            else:
                out[name] = self._encoders[name](getattr(message, name))
        return out


MaskTree = dict[str, "MaskTree | None"]
"""Compiled FieldMask: field name → sub-tree, or None for the whole field."""


def _identity(value: Any) -> Any:
    return value


def _message_of(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    assert message is not None, field.full_name
    return message


def _enum_of(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    assert enum is not None, field.full_name
    return enum


def mask_tree(descriptor: Descriptor, paths: Iterable[str]) -> MaskTree | str:
    """Compile FieldMask paths against a message; returns the tree or the first bad path."""
    tree: MaskTree = {}
    for path in paths:
        node: MaskTree = tree
        message: Descriptor | None = descriptor
        parts = path.split(".")
        for i, part in enumerate(parts):
            field = message.fields_by_name.get(part) if message is not None else None
            if field is None:
                return path
            if i == len(parts) - 1:
                node[part] = None
                break
            if (
                field.message_type is None
                or field.is_repeated
                or field.message_type.full_name in (STRUCT, VALUE, TIMESTAMP)
            ):
                return path
            if part in node and node[part] is None:
                break  # the whole field is already in the mask
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
            message = field.message_type
    return tree
