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
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from gagiteck.v1 import upstream_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    FieldDescriptor,
)
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from gateway.transcoding.json_values import (
    FIELD_MASK,
    FLOAT_TYPES,
    INT32_TYPES,
    INT_TYPES,
    LIST_VALUE,
    SKIP,
    STRUCT,
    TIMESTAMP,
    UINT_TYPES,
    VALUE,
    WRAPPERS,
    Decoder,
    Encoder,
    decode_list_value,
    decode_struct,
    decode_timestamp,
    decode_value,
    format_timestamp,
    struct_to_python,
    to_bool,
    to_bytes,
    to_float,
    to_int,
    to_str,
    value_to_python,
)

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
            for key in (rest, short, value.name, value.name.lower(), *_value_aliases(value)):
                self.by_name.setdefault(key, value.number)

    def decode(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.by_name.get(value, self.by_name.get(value.lower(), 0))
        if type(value) is int:
            return value if value in self.by_number else 0
        return SKIP

    def encode(self, number: int) -> str | int:
        return self.by_number.get(number, number)


def _value_aliases(value: EnumValueDescriptor) -> list[str]:
    """The other REST strings of an enum value (its ``(gagiteck.v1.value)`` option)."""
    options = value.GetOptions()
    if not options.HasExtension(upstream_pb2.value):
        return []
    return list(options.Extensions[upstream_pb2.value].aliases)


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
        self.aliases: dict[str, tuple[str, ...]] = {}
        """Field name → the other JSON names the upstream gives it (the contract's
        ``(gagiteck.v1.field).aliases``)."""

    # -- construction

    def compile(self) -> None:
        claims: dict[str, list[tuple[FieldDescriptor, Decoder]]] = {}
        for field in self.descriptor.fields:
            decode = self._field_decoder(field)
            self._encoders[field.name] = self._field_encoder(field)
            aliases = tuple(field_rule(field).aliases)
            if aliases:
                self.aliases[field.name] = aliases
            for key in dict.fromkeys((field.name, field.json_name)):
                claims.setdefault(key, []).insert(0, (field, decode))  # own names first
            for alias in aliases:
                claims.setdefault(alias, []).append((field, decode))
        for key, fields in claims.items():
            if len(fields) == 1:
                self._decoders[key] = (fields[0][0].name, fields[0][1])
            else:
                self._decoders[key] = ("", _by_shape(fields))

    def _field_decoder(self, field: FieldDescriptor) -> Decoder:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return self._map_decoder(field)
        one = self._single_decoder(field)
        if not field.is_repeated:
            return one

        def decode_list(value: Any) -> Any:
            if not isinstance(value, list):
                return SKIP
            out = []
            for item in value:
                if item is None:
                    continue
                got = one(item)
                if got is not SKIP:
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
                return SKIP
            out = {}
            for k, v in value.items():
                key, val = decode_key(k), decode_value(v) if v is not None else SKIP
                if key is not SKIP and val is not SKIP:
                    out[key] = val
            return out

        return decode_map

    def _single_decoder(self, field: FieldDescriptor) -> Decoder:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self._message_decoder(_message_of(field))
        if kind == FieldDescriptor.TYPE_ENUM:
            return self.registry.enum(_enum_of(field)).decode
        if kind in INT_TYPES:
            return to_int(32 if kind in INT32_TYPES else 64, unsigned=False)
        if kind in UINT_TYPES:
            return to_int(32 if kind in INT32_TYPES else 64, unsigned=True)
        if kind in FLOAT_TYPES:
            return to_float
        if kind == FieldDescriptor.TYPE_BOOL:
            return to_bool
        if kind == FieldDescriptor.TYPE_STRING:
            return to_str
        return to_bytes

    def _message_decoder(self, message: Descriptor) -> Decoder:
        name = message.full_name
        if name == TIMESTAMP:
            return decode_timestamp
        if name == STRUCT:
            return decode_struct
        if name == VALUE:
            return decode_value
        if name == LIST_VALUE:
            return decode_list_value
        if name in WRAPPERS:
            inner = self._single_decoder(message.fields_by_name["value"])

            def decode_wrapper(value: Any) -> Any:
                got = inner(value)
                return SKIP if got is SKIP else {"value": got}

            return decode_wrapper
        registry = self.registry
        nested: list[MessageCodec] = []  # bound on first use: types may refer to each other

        def decode_nested(value: Any) -> Any:
            if type(value) is not dict:
                return SKIP
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
            if got is not SKIP:
                name = entry[0]
                if name:
                    out[name] = got
                else:  # a JSON name shared by several fields: the chosen one comes with it
                    out[got[0]] = got[1]
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
        if kind in FLOAT_TYPES:
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
        if name in WRAPPERS:
            inner = self._single_encoder(message.fields_by_name["value"])
            return lambda w: inner(w.value)
        registry = self.registry
        return lambda m: registry.codec(message).encode(m)

    def encode(self, message: Message, skip: Iterable[str] = ()) -> dict[str, Any]:
        """The populated fields of ``message`` as REST JSON (proto field names, and each
        field's aliases beside its own name)."""
        encoders = self._encoders
        out = {
            fd.name: encoders[fd.name](value)
            for fd, value in message.ListFields()
            if fd.name not in skip
        }
        return self._with_aliases(out) if self.aliases else out

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
        return self._with_aliases(out) if self.aliases else out

    def _with_aliases(self, out: dict[str, Any]) -> dict[str, Any]:
        for name, aliases in self.aliases.items():
            if name in out:
                for alias in aliases:
                    out.setdefault(alias, out[name])
        return out


def _by_shape(fields: list[tuple[FieldDescriptor, Decoder]]) -> Decoder:
    """For a JSON name that several fields answer to (a field's own name and another's
    alias): the first field whose kind fits the value, as ``(field name, decoded)``."""

    def decode(value: Any) -> Any:
        for field, one in fields:
            if _fits(field, value):
                got = one(value)
                return SKIP if got is SKIP else (field.name, got)
        return SKIP

    return decode


def _fits(field: FieldDescriptor, value: Any) -> bool:
    """Whether ``value`` has the shape of ``field`` (an object for a message, a list for a
    repeated field, a plain value for a scalar); the well-known JSON types fit anything."""
    message = field.message_type
    if field.is_repeated and not (message is not None and message.GetOptions().map_entry):
        if not isinstance(value, list):
            return False
        value = next((item for item in value if item is not None), None)
        if value is None:
            return True
    if message is None or message.full_name in (VALUE, STRUCT, LIST_VALUE, TIMESTAMP):
        return message is not None or not isinstance(value, dict | list)
    return isinstance(value, dict)


def field_rule(field: FieldDescriptor) -> upstream_pb2.FieldRule:
    """The field's ``(gagiteck.v1.field)`` option (empty when it has none)."""
    options = field.GetOptions()
    if options.HasExtension(upstream_pb2.field):
        rule: upstream_pb2.FieldRule = options.Extensions[upstream_pb2.field]
        return rule
    return _NO_RULE


_NO_RULE: Final = upstream_pb2.FieldRule()

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
