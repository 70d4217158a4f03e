"""The route table: ``google.api.http`` rules compiled once, at start-up.

Each annotated method becomes a :class:`Route` that knows, without looking at descriptors
again, how to turn a request message into an HTTP method, a path (every variable one
validated, percent-encoded segment), query parameters and a JSON body, and how to read the
answer back. A rule the gateway cannot honour stops start-up with a :class:`RouteError`
that names the method and says what is wrong.

Supported rule shapes: the five verbs, ``body`` of ``""``, ``"*"`` or a top-level field,
``response_body`` of ``""`` or a top-level field, path variables ``{field}`` /
``{field=*}`` naming a singular string or integer field (nested ``{a.b}`` included), and a
trailing custom verb (``/v1/things/{id}:cancel``). Multi-segment variables (``**``) and
``additional_bindings`` are refused: every variable is exactly one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import orjson
from gagiteck.v1 import streaming_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from gateway.codec import (
    EMPTY,
    FIELD_MASK,
    CodecRegistry,
    MaskTree,
    MessageCodec,
    mask_tree,
)
from gateway.errors import FieldViolation, InvalidRequest

MAX_SEGMENT_LENGTH: Final = 256
"""Longest path variable accepted; upstream ids are far shorter."""

_VERBS = ("get", "put", "post", "delete", "patch")
_LITERAL = re.compile(r"^[A-Za-z0-9._~\-]+$")
_VARIABLE = re.compile(r"^\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(?:=\*)?\}$")
_FORBIDDEN = frozenset("/\\?#%")
_PLAIN_SEGMENT: Final = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9._~-]{{0,{MAX_SEGMENT_LENGTH - 1}}}")
"""Ids that are one valid segment as they stand (unreserved characters, not "." or "..")."""
_PATH_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
    }
)


class RouteError(Exception):
    """An annotation the gateway cannot honour; raised at start-up only."""

    def __init__(self, method: str, problem: str) -> None:
        super().__init__(f"{method}: {problem}")
        self.method = method


@dataclass(frozen=True, slots=True)
class PathVariable:
    """A path variable: the field path it reads and where it sits in the template."""

    field_path: tuple[str, ...]
    name: str  # dotted, for error messages


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a call turns into, before headers are added."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes | None


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


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled ``google.api.http`` rule."""

    full_method: str  # /package.Service/Method
    http_method: str
    template: str  # as written, e.g. /v1/agents/{agent_id}
    segments: tuple[str | PathVariable, ...]
    verb: str  # custom verb after ':' or ''
    body_field: str  # '', '*', or a field name
    response_field: str
    request_codec: MessageCodec
    response_codec: MessageCodec
    server_streaming: bool
    query_fields: frozenset[str]
    mask_field: str | None  # FieldMask that filters the body, if any
    bound_fields: frozenset[str] = field(default=frozenset())
    list_field: str = ""  # the one repeated field, for upstreams that answer a bare list
    body_extras: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"stream": True}
    sse: SseSpec | None = None
    watch: WatchSpec | None = None

    @property
    def route_template(self) -> str:
        """The route as a metric or span label: ids never appear in it."""
        return f"{self.http_method} {self.template}"

    @property
    def response_is_empty(self) -> bool:
        return self.response_codec.descriptor.full_name == EMPTY

    # -- per call

    def build(self, request: Message) -> HttpRequest:
        """Method, path, query and body for ``request``; InvalidRequest on a bad value."""
        path = self._path(request)
        body = self._body(request)
        query = self._query(request) if self.query_fields else []
        return HttpRequest(self.http_method, path, query, body)

    def _path(self, request: Message) -> str:
        parts: list[str] = []
        for segment in self.segments:
            if isinstance(segment, str):
                parts.append(segment)
            else:
                parts.append(_encode_segment(segment, _read(request, segment.field_path)))
        path = "/" + "/".join(parts)
        return f"{path}:{self.verb}" if self.verb else path

    def _body(self, request: Message) -> bytes | None:
        if not self.body_field:
            return None
        if self.body_field == "*":
            payload: Any = self.request_codec.encode(request, skip=self.bound_fields)
            if self.body_extras:
                payload.update(self.body_extras)
            return orjson.dumps(payload)
        value = getattr(request, self.body_field)
        field_desc = self.request_codec.descriptor.fields_by_name[self.body_field]
        if field_desc.message_type is None:
            return orjson.dumps(self.request_codec.encode(request).get(self.body_field))
        codec = self.request_codec.registry.codec(field_desc.message_type)
        mask = self._mask(request, codec.descriptor)
        if mask is None:
            return orjson.dumps(codec.encode(value))
        return orjson.dumps(codec.encode_masked(value, mask))

    def _mask(self, request: Message, body: Descriptor) -> MaskTree | None:
        if self.mask_field is None:
            return None
        paths = list(getattr(request, self.mask_field).paths)
        if not paths:
            return None
        tree = mask_tree(body, paths)
        if isinstance(tree, str):
            raise InvalidRequest(
                f"update_mask names {tree!r}, which is not a field of {body.name}",
                [FieldViolation(self.mask_field, f"unknown field path {tree!r}")],
            )
        return tree

    def _query(self, request: Message) -> list[tuple[str, str]]:
        encoded = self.request_codec.encode(request)
        query: list[tuple[str, str]] = []
        for name in self.query_fields:
            if name in encoded:
                _flatten(name, encoded[name], query)
        return query


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
    elif isinstance(value, list):
        for inner in value:
            _flatten(prefix, inner, out)
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    elif value is not None:
        out.append((prefix, str(value)))


def _read(message: Message, path: tuple[str, ...]) -> Any:
    value: Any = message
    for name in path:
        value = getattr(value, name)
    return value


def _encode_segment(variable: PathVariable, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_SEGMENT.fullmatch(text):  # the common case: nothing to check or escape
        return text
    problem = segment_problem(text)
    if problem is not None:
        raise InvalidRequest(f"{variable.name} {problem}", [FieldViolation(variable.name, problem)])
    return quote(text, safe="-._~")


def segment_problem(text: str) -> str | None:
    """Why ``text`` cannot be one path segment, or None when it can."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_SEGMENT_LENGTH:
        return f"is longer than {MAX_SEGMENT_LENGTH} characters"
    if text in (".", ".."):
        return "must not be a relative path segment"
    for ch in text:
        if ch in _FORBIDDEN:
            return f"must not contain {ch!r}"
        if ch.isspace() or not ch.isprintable():
            return "must not contain white space or control characters"
    return None


# --------------------------------------------------------------------------- compile


class RouteTable:
    """Every annotated method of the given services, compiled."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = {r.full_method: r for r in routes}

    def __getitem__(self, full_method: str) -> Route:
        return self._routes[full_method]

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes)

    @classmethod
    def compile(
        cls, services: Iterable[ServiceDescriptor], registry: CodecRegistry | None = None
    ) -> RouteTable:
        registry = registry or CodecRegistry()
        routes = []
        for service in services:
            for method in service.methods:
                routes.append(compile_route(method, registry))
        return cls(routes)


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def compile_route(method: MethodDescriptor, registry: CodecRegistry) -> Route:
    name = method.full_name
    if method.client_streaming:
        raise RouteError(name, "client-streaming methods cannot be transcoded to REST")
    rule = http_rule(method)
    if rule is None:
        raise RouteError(name, "has no google.api.http annotation")
    if rule.additional_bindings:
        raise RouteError(name, "additional_bindings are not supported; use one rule per RPC")
    pattern = rule.WhichOneof("pattern")
    if pattern not in _VERBS:
        raise RouteError(name, f"verb {pattern!r} is not supported (use get/put/post/delete/patch)")
    template = getattr(rule, pattern)
    request = method.input_type
    segments, verb, variables = _parse_template(name, template, request)
    body = rule.body
    if body not in ("", "*") and body not in request.fields_by_name:
        raise RouteError(name, f"body {body!r} is not a field of {request.full_name}")
    if pattern in ("get", "delete") and body:
        raise RouteError(name, f"a {pattern.upper()} rule cannot carry a body")
    bound = {v.field_path[0] for v in variables}
    mask_field = _mask_field(request, body)
    if body == "*":
        query: set[str] = set()
    else:
        query = {f.name for f in request.fields if f.name not in bound and f.name != body}
        query.discard(mask_field or "")
    response = method.output_type
    response_field = rule.response_body
    if response_field and response_field not in response.fields_by_name:
        raise RouteError(
            name, f"response_body {response_field!r} is not a field of {response.full_name}"
        )
    sse, watch, extras = _streaming(method, pattern, body, registry)
    return Route(
        full_method=f"/{method.containing_service.full_name}/{method.name}",
        http_method=pattern.upper(),
        template=template,
        segments=segments,
        verb=verb,
        body_field=body,
        response_field=response_field,
        request_codec=registry.codec(request),
        response_codec=registry.codec(response),
        server_streaming=method.server_streaming,
        query_fields=frozenset(query),
        mask_field=mask_field,
        bound_fields=frozenset(bound),
        list_field=_sole_repeated(response),
        body_extras=extras,
        sse=sse,
        watch=watch,
    )


def _streaming(
    method: MethodDescriptor, verb: str, body: str, registry: CodecRegistry
) -> tuple[SseSpec | None, WatchSpec | None, dict[str, Any]]:
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
    response = method.output_type
    if kind == "watch":
        if verb != "get":
            raise RouteError(name, "a watch must use a GET rule")
        if rule.watch.terminal_field not in response.fields_by_name:
            raise RouteError(
                name, f"watch terminal_field {rule.watch.terminal_field!r} is not a field"
            )
        return None, WatchSpec(rule.watch.terminal_field, frozenset(rule.watch.terminal_values)), {}
    sse = rule.sse
    extras: dict[str, Any] = {field_name: True for field_name in sse.enable_fields}
    if extras and body != "*":
        raise RouteError(name, 'sse enable_fields need a body: "*" rule')
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
    cancel = tuple(sse.cancel_path.strip("/").split("/")) if sse.cancel_path else ()
    return (
        SseSpec(
            members=members,
            terminal_events=frozenset(sse.terminal_events),
            error_event=sse.error_event,
            json_event=sse.json_event,
            event_id_field=(
                "event_id"
                if id_field is not None and id_field.type == FieldDescriptor.TYPE_STRING
                else ""
            ),
            cancel_path=cancel,
        ),
        None,
        extras,
    )


def _sole_repeated(message: Descriptor) -> str:
    repeated = [f.name for f in message.fields if f.is_repeated]
    return repeated[0] if len(repeated) == 1 else ""


def _mask_field(request: Descriptor, body: str) -> str | None:
    """The FieldMask that filters a message body, per the Update convention."""
    if body in ("", "*"):
        return None
    body_field = request.fields_by_name[body]
    if body_field.message_type is None:
        return None
    masks = [
        f.name
        for f in request.fields
        if f.message_type is not None and f.message_type.full_name == FIELD_MASK
    ]
    return masks[0] if len(masks) == 1 else None


def _parse_template(
    method: str, template: str, request: Descriptor
) -> tuple[tuple[str | PathVariable, ...], str, list[PathVariable]]:
    if not template.startswith("/"):
        raise RouteError(method, f"path {template!r} must start with '/'")
    path, verb = template, ""
    last_slash = template.rfind("/")
    colon = template.rfind(":")
    if colon > last_slash and not template[last_slash:].endswith("}"):
        path, verb = template[:colon], template[colon + 1 :]
        if not _LITERAL.match(verb):
            raise RouteError(method, f"custom verb {verb!r} in {template!r} is not a plain word")
    segments: list[str | PathVariable] = []
    variables: list[PathVariable] = []
    for raw in path[1:].split("/"):
        if _LITERAL.match(raw):
            segments.append(raw)
            continue
        match = _VARIABLE.match(raw)
        if match is None:
            raise RouteError(
                method,
                f"segment {raw!r} of {template!r} is neither a literal nor a single-segment "
                "variable like {field} (multi-segment '**' variables are not supported)",
            )
        variable = _resolve_variable(method, match.group(1), request)
        if variable.name in {v.name for v in variables}:
            raise RouteError(method, f"variable {variable.name!r} appears twice in {template!r}")
        segments.append(variable)
        variables.append(variable)
    return tuple(segments), verb, variables


def _resolve_variable(method: str, dotted: str, request: Descriptor) -> PathVariable:
    message: Descriptor | None = request
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        found = message.fields_by_name.get(part) if message is not None else None
        if found is None:
            raise RouteError(method, f"path variable {dotted!r} names no field of {request.name}")
        if found.is_repeated:
            raise RouteError(method, f"path variable {dotted!r} is a repeated field")
        if i < len(parts) - 1:
            message = found.message_type
        elif found.type not in _PATH_TYPES:
            raise RouteError(method, f"path variable {dotted!r} must be a string or integer field")
    return PathVariable(tuple(parts), dotted)
