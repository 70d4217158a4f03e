"""How a server-streaming RPC is served: the ``(gagiteck.v1.streaming)`` method option.

``sse`` relays an upstream ``text/event-stream``: each event type maps to a member of the
response's oneof (``run.started`` → ``run_started``), some events end the stream, one is
an error, and a plain JSON answer may stand for one event. ``watch`` polls the route's
GET until a terminal value of one field. Compiled once, at start-up, into an
:class:`SseSpec` or a :class:`WatchSpec`; a rule that does not fit the messages stops
start-up with a :class:`~gateway.transcoding.templates.RouteError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gagiteck.v1 import streaming_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from gateway.transcoding.codec import CodecRegistry, MessageCodec
from gateway.transcoding.templates import RouteError


@dataclass(frozen=True, slots=True)
class SseMember:
    """Where one event type goes: a member of the response's oneof."""

    field: str
    codec: MessageCodec


@dataclass(frozen=True, slots=True)
class SseSpec:
    """A server-streaming RPC relayed from an upstream ``text/event-stream``."""

    members: Mapping[str, SseMember]  # event type → oneof member
    terminal_events: frozenset[str]
    error_event: str
    json_event: str
    event_id_field: str  # string field of the response that gets the SSE id, or ''
    cancel_path: tuple[str, ...]  # segments; '{name}' are variables; () for none


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """A server-streaming RPC served by polling its GET until a terminal state."""

    terminal_field: str
    terminal_values: frozenset[str]


def compile_streaming(
    method: MethodDescriptor, verb: str, body: str, registry: CodecRegistry
) -> tuple[SseSpec | None, WatchSpec | None, dict[str, Any]]:
    """The method's streaming rule, and the fields its upstream request body gets set."""
    name = method.full_name
    options = method.GetOptions()
    rule = (
        options.Extensions[streaming_pb2.streaming]
        if options.HasExtension(streaming_pb2.streaming)
        else None
    )
    if not method.server_streaming:
        if rule is not None:
            raise RouteError(name, "a streaming option on a unary method")
        return None, None, {}
    kind = rule.WhichOneof("kind") if rule is not None else None
    if rule is None or kind is None:
        raise RouteError(
            name, "a server-streaming method needs a (gagiteck.v1.streaming) option: sse or watch"
        )
    if kind == "watch":
        return None, _watch_spec(method, verb, rule.watch), {}
    extras: dict[str, Any] = {field_name: True for field_name in rule.sse.enable_fields}
    if extras and body != "*":
        raise RouteError(name, 'sse enable_fields need a body: "*" rule')
    return _sse_spec(method, rule.sse, registry), None, extras


def _watch_spec(method: MethodDescriptor, verb: str, watch: streaming_pb2.Watch) -> WatchSpec:
    if verb != "get":
        raise RouteError(method.full_name, "a watch must use a GET rule")
    if watch.terminal_field not in method.output_type.fields_by_name:
        raise RouteError(
            method.full_name, f"watch terminal_field {watch.terminal_field!r} is not a field"
        )
    return WatchSpec(watch.terminal_field, frozenset(watch.terminal_values))


def _sse_spec(
    method: MethodDescriptor, sse: streaming_pb2.ServerSentEvents, registry: CodecRegistry
) -> SseSpec:
    name, response = method.full_name, method.output_type
    oneof = response.oneofs_by_name.get(sse.event_oneof)
    if oneof is None:
        raise RouteError(
            name, f"sse event_oneof {sse.event_oneof!r} is not a oneof of the response"
        )
    members: dict[str, SseMember] = {}
    for member in oneof.fields:
        if member.message_type is None:
            raise RouteError(name, f"oneof member {member.name!r} must be a message")
        event = member.name.replace("_", ".")
        members[event] = SseMember(member.name, registry.codec(member.message_type))
    for event in (*sse.terminal_events, sse.json_event):
        if event and event not in members:
            raise RouteError(name, f"sse event {event!r} has no member in {sse.event_oneof!r}")
    id_field = response.fields_by_name.get("event_id")
    return SseSpec(
        members=members,
        terminal_events=frozenset(sse.terminal_events),
        error_event=sse.error_event,
        json_event=sse.json_event,
        event_id_field=(
            "event_id"
            if id_field is not None and id_field.type == FieldDescriptor.TYPE_STRING
            else ""
        ),
        cancel_path=tuple(sse.cancel_path.strip("/").split("/")) if sse.cancel_path else (),
    )
