"""Hypothesis strategies generated from descriptors: requests for any RPC, answers for any route.

Nothing here names an RPC or a field of the contract. Callers' side:

* :func:`request_messages` — a message of any type, field by field from its descriptor:
  strings (unicode, control characters, path tricks, very long, ids the upstream knows),
  integers at the bounds of their type, floats with NaN and infinities, enums with unknown
  numbers, nested messages, repeated fields, maps, Struct/Value nested up to
  :data:`MAX_FREE_FORM_DEPTH` levels, Timestamps in and out of range, FieldMasks naming
  real, nested and bogus paths. ``hostile=False`` gives the well-formed kind, which reaches
  the upstream;
* :func:`request_bytes` — bytes that are (mostly) not a message: random, or a message's
  encoding truncated, flipped, lengthened, nested past the parsers' limits;
* :func:`call_metadata` — the metadata the gateway reads (request id, credential,
  idempotency key, trace context) with odd values.

Upstream's side:

* :func:`answer_json` — the JSON of a message as an upstream may send it: every name a field
  may go by (proto name, JSON name, the contract's aliases), values of the right kind or of
  a wrong one, nulls, huge numbers (:class:`Raw` literals), deep nesting;
* :func:`answers` — one HTTP answer for a route: status (100-599), headers (Content-Type,
  Content-Encoding, Retry-After, X-RateLimit-*), a body from :func:`body_bytes`, written in
  pieces or at once, the connection kept or closed;
* :func:`event_streams` — a ``text/event-stream`` body for a route's SSE rule: its events
  (every event type of the rule and unknown ones), ids, comments, retry lines, three kinds
  of line end, cut short or ended by a terminal event.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from gateway.transcoding.codec import EnumCodec, field_rule
from gateway.transcoding.routes import Route
from gateway.transcoding.stream_rules import SseSpec

MAX_MESSAGE_DEPTH: Final = 3
"""Nested message fields filled below a request (deeper ones stay unset)."""
MAX_FREE_FORM_DEPTH: Final = 50
"""Deepest Struct/Value generated: past the gateway's 32 and near the parsers' 100 levels."""
LONG: Final = 70_000
"""Longest string generated (path segments stop at 256, lines at 8190, bodies go on)."""

KNOWN_IDS: list[str] = []
"""Ids the upstream knows (filled by a module's fixture): mixed into every string field, so
that generated requests reach resources that exist."""

Json = Any

# --------------------------------------------------------------------------- scalars

_INT_BOUNDS: Final[Mapping[int, tuple[int, int]]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

NASTY_STRINGS: Final = (
    "", " ", ".", "..", "/", "a/b", "../admin", "%2F", "%", "%zz", "?x=1", "#frag", "a;b",
    "a:b", "@", "\\", "\r\n", "\n", "x\r\nInjected: 1", "\x00", "\t", "\x7f", "é", "💥",
    "\u202e", "\ufeff", "\u2028", "{agent_id}", "*", "**", "null", "true", "-1", "1e999",
    "<b>", "'\"", "a" * 256, "a" * 257,
)  # fmt: skip


def _known_id(index: int) -> str:
    return KNOWN_IDS[index % len(KNOWN_IDS)] if KNOWN_IDS else "unknown-id"


known_ids = st.integers(0, 1_000).map(_known_id)
"""One of :data:`KNOWN_IDS` (shrinks towards the first)."""


def _repeat(part: str, size: int) -> str:
    return (part * (size // max(len(part), 1) + 1))[:size]


long_texts = st.builds(_repeat, st.text(min_size=1, max_size=3), st.integers(257, LONG))
plain_texts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_hostile_texts = st.one_of(
    plain_texts,
    st.text(max_size=24),
    st.sampled_from(NASTY_STRINGS),
    known_ids,
    st.builds(str.__add__, known_ids, st.sampled_from(NASTY_STRINGS)),
    long_texts,
)
hostile_texts = st.deferred(lambda: _hostile_texts)  # deferred: a short name in statistics
benign_texts = st.one_of(plain_texts, known_ids)
printable_ascii_chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
printable_ascii = st.text(printable_ascii_chars, max_size=40)


def _integers(kind: int, hostile: bool) -> st.SearchStrategy[int]:
    low, high = _INT_BOUNDS[kind]
    if not hostile:
        return st.integers(max(low, 0), 100)
    edges = sorted({v for v in (low, low + 1, -1, 0, 1, 2**31, 2**53 + 1, high - 1, high)})
    return st.one_of(
        st.sampled_from([v for v in edges if low <= v <= high]), st.integers(low, high)
    )


def _floats(kind: int, hostile: bool) -> st.SearchStrategy[float]:
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(0, 2, width=32) if not hostile else st.floats(width=32)
    return st.floats(0, 2) if not hostile else st.floats()


def _enums(field: FieldDescriptor, hostile: bool) -> st.SearchStrategy[int]:
    enum = field.enum_type
    assert enum is not None
    known = st.sampled_from([v.number for v in enum.values])
    if not hostile or enum.is_closed:
        return known
    return st.one_of(known, st.integers(-(2**31), 2**31 - 1))


def _scalars(field: FieldDescriptor, hostile: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_BOUNDS:
        return _integers(kind, hostile)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _floats(kind, hostile)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enums(field, hostile)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64 if hostile else 8)
    return hostile_texts if hostile else benign_texts


# --------------------------------------------------------------------------- free-form JSON


def _json_scalars(hostile: bool) -> st.SearchStrategy[Json]:
    numbers = (
        st.floats(allow_nan=hostile, allow_infinity=hostile) if hostile else st.integers(-9, 9)
    )
    return st.one_of(st.none(), st.booleans(), numbers, hostile_texts if hostile else plain_texts)


@functools.cache
def json_values(hostile: bool = True) -> st.SearchStrategy[Json]:
    """Any JSON value: small trees, or chains of objects and lists up to
    :data:`MAX_FREE_FORM_DEPTH` deep."""
    built = _json_values(hostile)
    return st.deferred(lambda: built)  # deferred: a short name in statistics


def _json_values(hostile: bool) -> st.SearchStrategy[Json]:
    scalars = _json_scalars(hostile)
    keys = hostile_texts if hostile else plain_texts
    trees = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=8,
    )
    if not hostile:
        return trees
    chains = st.builds(_chain, st.lists(st.booleans(), max_size=MAX_FREE_FORM_DEPTH), trees)
    return st.one_of(trees, chains)


def _chain(levels: Sequence[bool], leaf: Json) -> Json:
    value = leaf
    for as_object in levels:
        value = {"a": value} if as_object else [value]
    return value


def _structs(hostile: bool) -> st.SearchStrategy[Message]:
    objects = json_values(hostile).map(lambda v: v if isinstance(v, dict) else {"v": v})
    return objects.map(_struct)


def _struct(value: dict[str, Json]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _value(value: Json) -> struct_pb2.Value:
    holder = _struct({"v": value})
    return holder.fields["v"]


def _list_value(value: Json) -> struct_pb2.ListValue:
    holder = _struct({"v": value if isinstance(value, list) else [value]})
    return holder.fields["v"].list_value


# --------------------------------------------------------------------------- well-known types

_SECONDS_MIN: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_SECONDS_MAX: Final = 253_402_300_799  # 9999-12-31T23:59:59Z


def _timestamps(hostile: bool) -> st.SearchStrategy[Message]:
    if not hostile:
        seconds = st.integers(0, 4_102_444_800)
        nanos = st.integers(0, 999_999_999)
    else:
        edges = [_SECONDS_MIN - 1, _SECONDS_MIN, 0, _SECONDS_MAX, _SECONDS_MAX + 1]
        seconds = st.one_of(
            st.integers(_SECONDS_MIN, _SECONDS_MAX),
            st.sampled_from(edges),
            st.integers(-(2**63), 2**63 - 1),
        )
        nanos = st.one_of(
            st.integers(0, 999_999_999), st.sampled_from([-1, 10**9, 2**31 - 1, -(2**31)])
        )
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


def mask_paths(message: Descriptor) -> list[str]:
    """Paths a FieldMask of ``message`` may name: the fields of its message-typed siblings
    (the body it filters), one and two levels deep."""
    paths: list[str] = []
    for sibling in message.fields:
        body = sibling.message_type
        if body is None or body.full_name.startswith("google.protobuf."):
            continue
        for field in body.fields:
            paths.append(field.name)
            inner = field.message_type
            if inner is not None and not inner.full_name.startswith("google.protobuf."):
                paths.extend(f"{field.name}.{f.name}" for f in inner.fields)
    return sorted(set(paths))


BOGUS_PATHS: Final = ("", ".", "a..b", "nope", "name.", ".name", "*", "config.*", "é", "a b")


def _field_masks(owner: Descriptor, hostile: bool) -> st.SearchStrategy[Message]:
    real = mask_paths(owner)
    if not real and not hostile:
        return st.just(field_mask_pb2.FieldMask())
    candidates: list[st.SearchStrategy[str]] = [st.sampled_from(real)] if real else []
    if hostile:
        candidates += [st.sampled_from(BOGUS_PATHS), hostile_texts]
    paths = st.lists(st.one_of(*candidates), max_size=4)
    return paths.map(lambda p: field_mask_pb2.FieldMask(paths=p))


def _well_known(
    descriptor: Descriptor, owner: Descriptor, hostile: bool
) -> st.SearchStrategy[Message] | None:
    name = descriptor.full_name
    if name == "google.protobuf.Struct":
        return _structs(hostile)
    if name == "google.protobuf.Value":
        return json_values(hostile).map(_value)
    if name == "google.protobuf.ListValue":
        return json_values(hostile).map(_list_value)
    if name == "google.protobuf.Timestamp":
        return _timestamps(hostile)
    if name == "google.protobuf.FieldMask":
        return _field_masks(owner, hostile)
    if name.startswith("google.protobuf."):
        return st.just(GetMessageClass(descriptor)())
    return None


# --------------------------------------------------------------------------- request messages


def request_messages(
    descriptor: Descriptor, hostile: bool = True, required: frozenset[str] = frozenset()
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type: any subset of its fields (always the ``required``
    ones, e.g. those bound to the path), each set to a value of its kind (see the module
    docstring)."""
    _remember(descriptor)
    return _messages(descriptor.full_name, hostile, 0, descriptor.full_name, required)


@functools.cache
def _messages(
    full_name: str,
    hostile: bool,
    depth: int,
    owner: str,
    required: frozenset[str] = frozenset(),
) -> st.SearchStrategy[Message]:
    descriptor = _descriptor(full_name)
    special = _well_known(descriptor, _descriptor(owner), hostile)
    if special is not None:
        return special
    cls = GetMessageClass(descriptor)
    if depth > MAX_MESSAGE_DEPTH:
        return st.just(cls())
    values = {field.name: _deferred_field(field, hostile, depth) for field in descriptor.fields}
    always = {name: value for name, value in values.items() if name in required}
    optional = {name: value for name, value in values.items() if name not in required}
    return st.fixed_dictionaries(always, optional=optional).map(functools.partial(_assemble, cls))


_DESCRIPTORS: dict[str, Descriptor] = {}


def _descriptor(full_name: str) -> Descriptor:
    return _DESCRIPTORS[full_name]


def _remember(descriptor: Descriptor) -> None:
    if descriptor.full_name in _DESCRIPTORS:
        return
    _DESCRIPTORS[descriptor.full_name] = descriptor
    for field in descriptor.fields:
        if field.message_type is not None:
            _remember(field.message_type)


def _deferred_field(field: FieldDescriptor, hostile: bool, depth: int) -> st.SearchStrategy[Any]:
    """The field's values, built when first drawn (message types may be recursive)."""

    def build() -> st.SearchStrategy[Any]:
        return _field_values(field, hostile, depth)

    return st.deferred(build)


def _field_values(field: FieldDescriptor, hostile: bool, depth: int) -> st.SearchStrategy[Any]:
    owner = field.containing_type
    assert owner is not None
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        keys = _single(message.fields_by_name["key"], hostile, depth, message)
        values = _single(message.fields_by_name["value"], hostile, depth, message)
        return st.dictionaries(keys, values, max_size=4)
    one = _single(field, hostile, depth, owner)
    if field.is_repeated:
        return st.lists(one, max_size=5 if hostile else 2)
    return one


def _single(
    field: FieldDescriptor, hostile: bool, depth: int, owner: Descriptor
) -> st.SearchStrategy[Any]:
    if field.message_type is None:
        return _scalars(field, hostile)
    _remember(field.message_type)
    _remember(owner)
    return _messages(field.message_type.full_name, hostile, depth + 1, owner.full_name)


def _assemble(cls: type[Message], values: Mapping[str, Any]) -> Message:
    message = cls()
    fields = cls.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        field = fields[name]
        target = getattr(message, name) if field.message_type is not None else None
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            assert target is not None
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            container = getattr(message, name)
            for item in value:
                if isinstance(item, Message):
                    container.add().CopyFrom(item)
                else:
                    container.append(item)
        elif isinstance(value, Message):
            assert target is not None
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# --------------------------------------------------------------------------- request bytes


def request_bytes(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes sent as a request of ``descriptor``'s type: random, or a valid encoding
    mutated (cut, flipped, length prefixes lengthened, unknown or deeply nested fields)."""
    encodings = request_messages(descriptor, hostile=False).map(lambda m: m.SerializeToString())
    return st.one_of(
        st.binary(max_size=256),
        st.builds(_mutated, encodings, st.lists(_mutations, min_size=1, max_size=3)),
        st.builds(_nested_groups, st.integers(1, 200)),
        st.builds(_nested_lengths, st.integers(1, 200)),
    )


Mutation = Callable[[bytes], bytes]


def _cut(at: int) -> Mutation:
    return lambda data: data[: at % (len(data) + 1)]


def _flip(at: int, bits: int) -> Mutation:
    def flip(data: bytes) -> bytes:
        if not data:
            return data
        i = at % len(data)
        return data[:i] + bytes([data[i] ^ bits]) + data[i + 1 :]

    return flip


def _insert(at: int, raw: bytes) -> Mutation:
    def insert(data: bytes) -> bytes:
        i = at % (len(data) + 1)
        return data[:i] + raw + data[i:]

    return insert


_WIRE_PIECES: Final = (
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
    b"\x0a\xff\xff\xff\xff\x0f",  # field 1, length 4 GiB
    b"\x0a\x02\xff\xfe",  # field 1, invalid UTF-8
    b"\x0b",  # field 1, start group
    b"\x0c",  # field 1, end group
    b"\x07",  # wire type 7
    b"\x00",  # field 0
    b"\xf8\xff\xff\xff\x0f\x01",  # field 2**28-1, varint
    b"\x15\x00\x00",  # fixed32 cut short
)

_mutations = st.one_of(
    st.builds(_cut, st.integers(0, 1 << 16)),
    st.builds(_flip, st.integers(0, 1 << 16), st.integers(1, 255)),
    st.builds(_insert, st.integers(0, 1 << 16), st.sampled_from(_WIRE_PIECES)),
    st.builds(_insert, st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
)


def _mutated(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    for mutate in mutations:
        data = mutate(data)
    return data


def _nested_groups(depth: int) -> bytes:
    return b"\x0b" * depth + b"\x0c" * depth


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _nested_lengths(depth: int) -> bytes:
    data = b""
    for _ in range(depth):
        data = b"\x0a" + _varint(len(data)) + data
    return data


# --------------------------------------------------------------------------- metadata

_TRACEPARENTS: Final = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-0000000000000000-01",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-xyz",
    "",
)


def call_metadata(credentials: Sequence[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Metadata for a call: a credential from ``credentials`` or an odd one, and odd
    request ids, idempotency keys and trace context (printable ASCII: gRPC refuses more)."""
    odd = st.text(printable_ascii_chars, max_size=300)
    long = st.builds(
        _repeat, st.text(printable_ascii_chars, min_size=1, max_size=2), st.integers(300, 2000)
    )
    pairs = st.fixed_dictionaries(
        {},
        optional={
            "authorization": st.one_of(st.sampled_from(credentials), odd),
            "x-request-id": st.one_of(plain_texts, odd, long),
            "idempotency-key": st.one_of(plain_texts, odd),
            "traceparent": st.one_of(st.sampled_from(_TRACEPARENTS), odd),
            "tracestate": odd,
            "x-custom": odd,
        },
    )
    return pairs.map(lambda d: sorted(d.items()))


# --------------------------------------------------------------------------- answers: JSON


@dataclass(frozen=True)
class Raw:
    """A JSON literal written as it is (numbers JSON parsers choke on)."""

    text: str


HUGE_NUMBERS: Final = (
    "1e999", "-1e999", "1e308", "2e308", "123456789012345678901234567890",
    "-9223372036854775809", "18446744073709551616", "9007199254740993",
    "1.0000000000000000000000001", "0.0e-99999", "-0", "NaN", "Infinity",
)  # fmt: skip

_TIMESTAMP_TEXTS: Final = (
    "2024-01-15T10:30:00.123456", "2024-01-15T10:30:00Z", "2024-01-15T10:30:00+05:30",
    "2024-01-15 10:30:00", "2024-01-15", "2024-02-30T00:00:00", "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
    "2024-01-15T10:30:00.1234567891234Z", "2024-01-15T25:61:61", "1705314600", "now", "",
)  # fmt: skip


@functools.cache
def any_json(hostile: bool = True) -> st.SearchStrategy[Json]:
    """A JSON value of any kind, huge numbers included."""
    built = st.one_of(json_values(hostile), st.sampled_from(HUGE_NUMBERS).map(Raw))
    return st.deferred(lambda: built)


def answer_json(
    descriptor: Descriptor,
    overrides: Mapping[str, st.SearchStrategy[Json]] | None = None,
    depth: int = 0,
) -> st.SearchStrategy[dict[str, Json]]:
    """The JSON object of a ``descriptor`` message as an upstream may send it: each field
    under any of its names, with a value of its kind, of another kind, or null."""
    overrides = overrides or {}
    optional: dict[str, st.SearchStrategy[Json]] = {}
    for field in descriptor.fields:
        value = st.one_of(
            _field_json(field, depth),
            st.none(),
            any_json(),
            deep_json,
            *([overrides[field.name]] if field.name in overrides else []),
        )
        for name in dict.fromkeys((field.name, field.json_name, *field_rule(field).aliases)):
            optional[name] = value
    extras = st.dictionaries(hostile_texts, any_json(), max_size=2)
    objects = st.fixed_dictionaries({}, optional=optional)
    return st.builds(lambda known, more: {**more, **known}, objects, extras)


def _field_json(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Json]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        value_field = message.fields_by_name["value"]
        return st.dictionaries(hostile_texts, _single_json(value_field, depth), max_size=3)
    one = _single_json(field, depth)
    return st.lists(one, max_size=4) if field.is_repeated else one


def _single_json(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Json]:
    message = field.message_type
    if message is not None:
        return _message_json(message, depth)
    kind = field.type
    if kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        return st.one_of(
            st.integers(low, high),
            st.integers(low, high).map(str),
            st.sampled_from([low - 1, high + 1, 2**64, -(2**64)]),
            st.floats(),
            st.sampled_from(HUGE_NUMBERS).map(Raw),
        )
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(
            st.floats(),
            st.integers(),
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "x"]),
            st.sampled_from(HUGE_NUMBERS).map(Raw),
        )
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.one_of(st.booleans(), st.sampled_from(["true", "false", "yes", 0, 1, 2]))
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        names = sorted(EnumCodec(field.enum_type).by_name)
        return st.one_of(st.sampled_from(names), hostile_texts, st.integers(-(2**31), 2**40))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode()),
            st.sampled_from(["!!!", "a", "====", "YQ"]),
        )
    return st.one_of(hostile_texts, st.integers(), st.floats(), st.booleans())


@functools.cache
def _message_json_cached(full_name: str, depth: int) -> st.SearchStrategy[Json]:
    descriptor = _descriptor(full_name)
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        return st.one_of(
            st.sampled_from(_TIMESTAMP_TEXTS),
            st.datetimes().map(lambda d: d.isoformat()),
            st.integers(-(2**40), 2**40),
            hostile_texts,
        )
    if name == "google.protobuf.Struct":
        return json_values().map(lambda v: v if isinstance(v, dict) else {"v": v})
    if name in ("google.protobuf.Value", "google.protobuf.ListValue"):
        return any_json()
    if name == "google.protobuf.FieldMask":
        return st.one_of(hostile_texts, st.lists(hostile_texts, max_size=3))
    if name.startswith("google.protobuf."):
        return st.just({})
    if depth > MAX_MESSAGE_DEPTH:
        return st.just({})
    return answer_json(descriptor, depth=depth + 1)


def _message_json(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Json]:
    _remember(descriptor)
    return st.deferred(lambda: _message_json_cached(descriptor.full_name, depth))


def route_json(
    route: Route, overrides: Mapping[str, st.SearchStrategy[Json]] | None = None
) -> st.SearchStrategy[Json]:
    """A 2xx body's JSON for ``route``: its response message, and the shapes the gateway
    also reads (the ``response_body`` field's value alone, the one list bare)."""
    descriptor = route.response_codec.descriptor
    _remember(descriptor)
    shapes = [answer_json(descriptor, overrides), any_json()]
    fields = descriptor.fields_by_name
    for name in dict.fromkeys(n for n in (route.response_field, route.list_field) if n):
        shapes.append(_field_json(fields[name], 0))
    return st.one_of(*shapes)


def encode_json(value: Json, ensure_ascii: bool = False) -> str:
    """JSON text of ``value``; :class:`Raw` literals as written, non-finite floats as the
    NaN/Infinity tokens some servers emit (iterative: no recursion limit)."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif item is None:
            out.append("null")
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif isinstance(item, int):
            out.append(str(item))
        elif isinstance(item, float):
            out.append(repr(item) if math.isfinite(item) else _NON_FINITE[str(item)])
        elif isinstance(item, str):
            out.append(_string(item, ensure_ascii))
        elif isinstance(item, list):
            parts: list[Any] = [Raw("[")]
            for i, inner in enumerate(item):
                parts.extend(([Raw(",")] if i else []) + [inner])
            parts.append(Raw("]"))
            stack.extend(reversed(parts))
        elif isinstance(item, dict):
            parts = [Raw("{")]
            for i, (key, inner) in enumerate(item.items()):
                parts.extend(
                    ([Raw(",")] if i else []) + [Raw(_string(str(key), ensure_ascii) + ":")]
                )
                parts.append(inner)
            parts.append(Raw("}"))
            stack.extend(reversed(parts))
        else:
            raise TypeError(f"not JSON: {item!r}")
    return "".join(out)


_NON_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _string(text: str, ensure_ascii: bool) -> str:
    return json.dumps(text, ensure_ascii=ensure_ascii)


# --------------------------------------------------------------------------- answers: bytes


DEPTHS: Final = (31, 32, 33, 64, 99, 100, 101, 254, 255, 256, 1023, 1024, 1025, 100_000)
"""Nesting depths next to the limits of parsers and serializers (the gateway's free-form
limit, protobuf's 100, orjson's 254 for dumps and 1024 for loads)."""
SIZES: Final = (2**16 - 16, 2**16 + 16, 2**18, 2**20 - 64, 2**20 + 64)
"""String sizes next to common message and body limits."""


def _deep_text(depth: int, as_object: bool) -> bytes:
    if as_object:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


deep_json = st.builds(
    lambda depth, as_object: Raw(_deep_text(depth, as_object).decode()),
    st.sampled_from(DEPTHS[:-1]),
    st.booleans(),
)
"""A value nested next to a parser's or serializer's limit, as a field's value."""


def _huge(size: int, char: str) -> bytes:
    return ('{"name":"' + char * size + '"}').encode()


def _invalid_utf8(text: bytes, at: int, raw: bytes) -> bytes:
    i = at % (len(text) + 1)
    return text[:i] + raw + text[i:]


_BAD_UTF8: Final = (b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80")


def body_bytes(json_values_: st.SearchStrategy[Json]) -> st.SearchStrategy[bytes]:
    """A body: JSON of the given values (ASCII or not), or deeply nested, huge, cut short,
    invalid UTF-8, empty, HTML, a BOM in front."""
    texts = st.builds(encode_json, json_values_, st.booleans()).map(str.encode)
    return st.one_of(
        texts,
        texts,
        texts,
        texts,
        st.builds(
            _deep_text, st.one_of(st.sampled_from(DEPTHS), st.integers(1, 100_000)), st.booleans()
        ),
        st.builds(
            _huge,
            st.one_of(st.sampled_from(SIZES), st.integers(1, 600_000)),
            st.sampled_from(["x", "é", "\\u00e9"]),
        ),
        st.builds(lambda t, at: t[: at % (len(t) + 1)], texts, st.integers(0, 1 << 16)),
        st.builds(_invalid_utf8, texts, st.integers(0, 1 << 16), st.sampled_from(_BAD_UTF8)),
        st.sampled_from([b"", b" ", b"\n", b"null", b"<html><body>502</body></html>"]),
        texts.map(lambda t: b"\xef\xbb\xbf" + t),
        texts.map(lambda t: t.decode().encode("utf-16")),
    )


# --------------------------------------------------------------------------- answers: HTTP


@dataclass(frozen=True)
class Answer:
    """What the scripted upstream sends for one request."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunks: tuple[int, ...] = ()
    """Sizes of the first pieces written separately (empty: the body at once)."""
    close: bool = False
    """Close the connection after the answer."""

    def __repr__(self) -> str:  # bodies may be megabytes: show their start
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return (
            f"Answer(status={self.status}, headers={self.headers!r}, body={body!r} "
            f"({len(self.body)} bytes), chunks={self.chunks}, close={self.close})"
        )


STATUSES: Final = (
    200, 201, 202, 203, 204, 206, 299, 100, 101, 103, 199, 300, 301, 302, 304, 307, 400,
    401, 403, 404, 405, 406, 408, 409, 410, 412, 413, 416, 418, 422, 425, 429, 451, 499,
    500, 501, 502, 503, 504, 507, 599,
)  # fmt: skip

CONTENT_TYPES: Final = (
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "application/problem+json", "APPLICATION/JSON", "text/json", "text/html; charset=utf-8",
    "text/plain", "text/event-stream", "application/octet-stream",
    "multipart/mixed; boundary=x", "",
)  # fmt: skip

RETRY_AFTERS: Final = (
    "0", "0.01", "0.05", "-1", "-0.5", "inf", "-inf", "nan", "NaN", "1e20", "1e400",
    "99999999999999999999999", "3600", "86401", "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT",
    "Mon, 32 Foo 2024 99:99:99 GMT", "soon", "", " 0 ", "1,2",
)  # fmt: skip

RATE_LIMIT_VALUES: Final = (
    "0", "1", "-1", "100", "1e20", "nan", "inf", "99999999999999999999", "1700000000",
    "1700000000000", "17000000000000000", "abc", "", "0.5",
)  # fmt: skip


def _header_pairs(with_encoding: str | None) -> st.SearchStrategy[list[tuple[str, str]]]:
    rate = st.sampled_from(RATE_LIMIT_VALUES)
    chosen = st.fixed_dictionaries(
        {},
        optional={
            "Content-Type": st.sampled_from(CONTENT_TYPES),
            "Retry-After": st.one_of(st.sampled_from(RETRY_AFTERS), printable_ascii),
            "X-RateLimit-Limit": rate,
            "X-RateLimit-Remaining": rate,
            "X-RateLimit-Reset": rate,
            "X-Extra": st.text(
                st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                max_size=64,
            ),
        },
    )
    pairs = chosen.map(lambda d: list(d.items()))
    if with_encoding is None:
        return pairs
    return pairs.map(lambda p: [*p, ("Content-Encoding", with_encoding)])


_ENCODINGS: Final = (
    "identity", "gzip", "gzip-truncated", "gzip-twice", "gzip-lies", "deflate", "deflate-raw",
    "br", "bogus", "gzip, identity",
)  # fmt: skip


def _encoded(body: bytes, coding: str) -> tuple[bytes, str | None]:
    """The body as sent and its Content-Encoding header (None: no header)."""
    if coding == "none":
        return body, None
    if coding == "gzip":
        return gzip.compress(body), "gzip"
    if coding == "gzip-truncated":
        packed = gzip.compress(body)
        return packed[: max(len(packed) // 2, 1)], "gzip"
    if coding == "gzip-twice":
        return gzip.compress(body) * 2, "gzip"
    if coding == "gzip-lies":
        return body, "gzip"
    if coding == "deflate":
        return zlib.compress(body), "deflate"
    if coding == "deflate-raw":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(body) + packer.flush(), "deflate"
    return body, coding


def answers(
    success_json: st.SearchStrategy[Json], error_json: st.SearchStrategy[Json] | None = None
) -> st.SearchStrategy[Answer]:
    """One HTTP answer: a 2xx status (half of them) with a body drawn on ``success_json``, or
    any status from 100 to 599 with one drawn on ``error_json`` (FastAPI's error shapes and
    anything else by default) or on ``success_json``."""
    error_json = error_bodies() if error_json is None else error_json
    success = st.sampled_from([s for s in STATUSES if 200 <= s < 300])
    others = st.one_of(st.sampled_from(STATUSES), st.integers(100, 599))
    return st.one_of(
        _answers(success, body_bytes(success_json)),
        _answers(others, body_bytes(st.one_of(error_json, success_json))),
    )


def _answers(
    statuses: st.SearchStrategy[int], bodies: st.SearchStrategy[bytes]
) -> st.SearchStrategy[Answer]:
    return st.builds(
        _answer,
        statuses,
        bodies,
        st.sampled_from(("none", "none", "none", *_ENCODINGS)),
        _header_pairs(None),
        st.lists(st.integers(1, 64), max_size=4),
        st.booleans(),
    )


def _answer(
    status: int,
    body: bytes,
    coding: str,
    headers: list[tuple[str, str]],
    chunks: list[int],
    close: bool,
) -> Answer:
    sent, encoding = _encoded(body, coding)
    if encoding is not None:
        headers = [*headers, ("Content-Encoding", encoding)]
    # a 1xx answer on a kept connection leaves the client waiting for the real one until
    # its deadline: close the connection after it so that examples stay short
    close = close or status < 200
    return Answer(status, tuple(headers), sent, tuple(chunks), close)


def error_bodies() -> st.SearchStrategy[Json]:
    """JSON an upstream sends with an error: FastAPI's shapes with odd values, or anything."""
    detail = st.one_of(
        hostile_texts,
        st.lists(
            st.fixed_dictionaries(
                {"loc": st.lists(st.one_of(hostile_texts, st.integers()), max_size=3)},
                optional={"msg": hostile_texts, "type": hostile_texts},
            ),
            max_size=3,
        ),
        any_json(),
    )
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "detail": detail,
            "code": st.one_of(hostile_texts, any_json()),
            "status": st.one_of(st.integers(-1, 1000), any_json()),
            "message": hostile_texts,
        },
    )
    return st.one_of(shaped, any_json())


# --------------------------------------------------------------------------- answers: SSE

_LINE_ENDS: Final = ("\n", "\r\n", "\r")


@dataclass(frozen=True)
class _Event:
    type: str | None
    data: str | None
    id: str | None
    retry: str | None
    comment: str | None


_EVENT_LINE: Final = st.text(max_size=16).map(lambda s: s.replace("\r", "").replace("\n", ""))


def _event_types(spec: SseSpec) -> st.SearchStrategy[str | None]:
    names = sorted({*spec.members, spec.error_event, "message", "ping", "run.unknown", "ERROR"})
    return st.one_of(st.sampled_from(names), _EVENT_LINE, st.none())


def _event_of(spec: SseSpec, kind: str | None) -> st.SearchStrategy[_Event]:
    """An event of type ``kind`` whose data is the JSON of its oneof member (or of the
    error event), with wrong types, other JSON, text, a huge value or none."""
    member = spec.members.get(kind or "")
    if member is not None:
        shaped = _message_json(member.codec.descriptor, 0)
    elif kind == spec.error_event:
        shaped = error_bodies()
    else:
        shaped = any_json()
    data = st.one_of(
        st.builds(encode_json, shaped, st.booleans()),
        st.text(max_size=40),
        st.builds(_repeat, st.sampled_from(["x", "é"]), st.integers(1, 120_000)).map(
            lambda s: encode_json({"content": s})
        ),
        st.none(),
    )
    return st.builds(
        _Event,
        st.just(kind),
        data,
        st.one_of(st.none(), _EVENT_LINE, long_texts.map(lambda s: s[:300])),
        st.one_of(st.none(), st.sampled_from(["0", "1000", "-5", "x", "1e99"])),
        st.one_of(st.none(), _EVENT_LINE),
    )


def _render(event: _Event, end: str) -> str:
    lines: list[str] = []
    if event.comment is not None:
        lines.append(": " + event.comment)
    if event.id is not None:
        lines.append("id: " + event.id)
    if event.type is not None:
        lines.append("event: " + event.type)
    if event.retry is not None:
        lines.append("retry: " + event.retry)
    if event.data is not None:
        lines.extend("data: " + part for part in event.data.split("\n"))
    return end.join(lines) + end + end


def event_streams(spec: SseSpec) -> st.SearchStrategy[bytes]:
    """A ``text/event-stream`` body: events of the rule's types and others, each with its
    line ends, maybe a BOM first, maybe cut in the middle, maybe invalid UTF-8 in it."""
    ends = st.sampled_from(_LINE_ENDS)
    any_event = _event_types(spec).flatmap(lambda kind: _event_of(spec, kind))
    last: st.SearchStrategy[tuple[_Event, str]] = st.nothing()
    if spec.terminal_events:
        terminal = st.sampled_from(sorted(spec.terminal_events))
        last = st.tuples(terminal.flatmap(lambda kind: _event_of(spec, kind)), ends)
    events = st.builds(
        lambda first, end: first + ([end] if end is not None else []),
        st.lists(st.tuples(any_event, ends), max_size=6),
        st.one_of(st.none(), last),
    )
    texts = events.map(lambda es: "".join(_render(e, end) for e, end in es))

    def finish(text: str, bom: bool, cut: int | None, bad: bytes | None, at: int) -> bytes:
        data = text.encode()
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        if bad is not None:
            data = _invalid_utf8(data, at, bad)
        return (b"\xef\xbb\xbf" if bom else b"") + data

    return st.builds(
        finish,
        texts,
        st.booleans(),
        st.one_of(st.none(), st.integers(0, 1 << 16)),
        st.one_of(st.none(), st.sampled_from(_BAD_UTF8)),
        st.integers(0, 1 << 16),
    )


SSE_CONTENT_TYPES: Final = (
    "text/event-stream", "text/event-stream; charset=utf-8",
    "text/event-stream;charset=latin-1", "TEXT/EVENT-STREAM", "text/event-streams",
)  # fmt: skip


def stream_answers(spec: SseSpec) -> st.SearchStrategy[Answer]:
    """A 2xx ``text/event-stream`` answer for an SSE route, written in pieces."""
    return st.builds(
        _answer,
        st.sampled_from([200, 200, 200, 201, 203, 206, 299]),
        event_streams(spec),
        st.sampled_from(("none", "none", "none", "none", *_ENCODINGS)),
        st.builds(
            lambda ctype, extra: [("Content-Type", ctype), *extra],
            st.sampled_from(SSE_CONTENT_TYPES),
            _header_pairs(None).map(lambda p: [h for h in p if h[0] != "Content-Type"]),
        ),
        st.lists(st.integers(1, 512), max_size=8),
        st.booleans(),
    )
