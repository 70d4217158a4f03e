"""The route table: ``google.api.http`` rules compiled once, at start-up.

Each annotated method becomes a :class:`Route` that knows, without looking at descriptors
again, how to turn a request message into an upstream request — an HTTP method, a path
(every variable one validated, percent-encoded segment: :mod:`gateway.transcoding.templates`),
query parameters and a JSON body — and how to read the answer back. A rule the gateway
cannot honour stops start-up with a :class:`~gateway.transcoding.templates.RouteError`
that names the method and says what is wrong.

Supported rule shapes: the five verbs, ``body`` of ``""``, ``"*"`` or a top-level field,
``response_body`` of ``""`` or a top-level field, path variables ``{field}`` /
``{field=*}`` naming a singular string or integer field (nested ``{a.b}`` included), and a
trailing custom verb (``/v1/things/{id}:cancel``). Multi-segment variables (``**``) and
``additional_bindings`` are refused: every variable is exactly one path segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from gagiteck.v1 import upstream_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gateway.error_body import FieldViolation
from gateway.errors import InvalidRequest
from gateway.transcoding.codec import CodecRegistry, MaskTree, MessageCodec, mask_tree
from gateway.transcoding.json_values import EMPTY, FIELD_MASK, BadValue
from gateway.transcoding.paging import Paging
from gateway.transcoding.stream_rules import SseSpec, WatchSpec, compile_streaming
from gateway.transcoding.templates import (
    PathVariable,
    RouteError,
    encode_segment,
    parse_template,
    read_field,
)
from gateway.transcoding.updates import UpdateRule
from gateway.upstream.request import UpstreamRequest

_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled ``google.api.http`` rule."""

    full_method: str  # /package.Service/Method
    http_method: str
    template: str  # as written, e.g. /v1/agents/{agent_id}
    route_template: str  # "GET /v1/agents/{agent_id}": its name in metrics, spans, errors
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
    paging: Paging | None = None  # a list by the API's convention (transcoding/paging.py)
    also_query: tuple[tuple[tuple[str, ...], str], ...] = ()  # (field path, parameter)
    update: UpdateRule | None = None  # a masked update (transcoding/updates.py)
    body_extras: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"stream": True}
    sse: SseSpec | None = None
    watch: WatchSpec | None = None

    @property
    def has_body(self) -> bool:
        return bool(self.body_field)

    @property
    def response_is_empty(self) -> bool:
        return self.response_codec.descriptor.full_name == EMPTY

    # -- per call

    def build(self, request: Message, headers: dict[str, str]) -> UpstreamRequest:
        """The upstream request for ``request``; InvalidRequest on a bad value."""
        try:
            query = self._query(request) if self.query_fields else None
            if self.also_query:
                query = (query or []) + self._also(request)
            body = self._body(request)
        except BadValue as exc:
            raise InvalidRequest(str(exc), [FieldViolation("request", str(exc))]) from None
        return UpstreamRequest(
            self.http_method, self._path(request), self.route_template, headers, query, body
        )

    def _also(self, request: Message) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for path, name in self.also_query:
            _flatten(name, read_field(request, path), found)
        return [(name, value) for name, value in found if value not in ("", "0", "false")]

    def _path(self, request: Message) -> str:
        parts: list[str] = []
        for segment in self.segments:
            if isinstance(segment, str):
                parts.append(segment)
            else:
                parts.append(encode_segment(segment, read_field(request, segment.field_path)))
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
    pattern, template, rule = _verb_and_template(method)
    request, response = method.input_type, method.output_type
    segments, verb, variables = parse_template(name, template, request)
    body = rule.body
    if body not in ("", "*") and body not in request.fields_by_name:
        raise RouteError(name, f"body {body!r} is not a field of {request.full_name}")
    if pattern in ("get", "delete") and body:
        raise RouteError(name, f"a {pattern.upper()} rule cannot carry a body")
    bound = {v.field_path[0] for v in variables}
    mask_field = _mask_field(request, body)
    query: set[str] = set()
    if body != "*":
        query = {f.name for f in request.fields if f.name not in bound and f.name != body}
        query.discard(mask_field or "")
    response_field = rule.response_body
    if response_field and response_field not in response.fields_by_name:
        raise RouteError(
            name, f"response_body {response_field!r} is not a field of {response.full_name}"
        )
    sse, watch, extras = compile_streaming(method, pattern, body, registry)
    list_field = _sole_repeated(response)
    return Route(
        full_method=f"/{method.containing_service.full_name}/{method.name}",
        http_method=pattern.upper(),
        template=template,
        route_template=f"{pattern.upper()} {template}",
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
        list_field=list_field,
        paging=Paging.of(
            request, response, list_field, registry.codec(response).aliases.get(list_field, ())
        ),
        also_query=_also_query(method),
        update=_update_rule(pattern, request, response, body, mask_field),
        body_extras=extras,
        sse=sse,
        watch=watch,
    )


def _verb_and_template(method: MethodDescriptor) -> tuple[str, str, http_pb2.HttpRule]:
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
    return pattern, getattr(rule, pattern), rule


def _update_rule(
    verb: str, request: Descriptor, response: Descriptor, body: str, mask_field: str | None
) -> UpdateRule | None:
    """The write rule of a POST or PATCH whose body is one message field."""
    if verb not in ("post", "patch") or body in ("", "*"):
        return None
    body_type = request.fields_by_name[body].message_type
    if body_type is None:
        return None
    return UpdateRule.of(body, mask_field, body_type, response)


def _also_query(method: MethodDescriptor) -> tuple[tuple[tuple[str, ...], str], ...]:
    """The request fields the RPC's ``(gagiteck.v1.request).also_query`` sends as query
    parameters too; each path must name a singular scalar field."""
    options = method.GetOptions()
    if not options.HasExtension(upstream_pb2.request):
        return ()
    found: list[tuple[tuple[str, ...], str]] = []
    for dotted in options.Extensions[upstream_pb2.request].also_query:
        message: Descriptor | None = method.input_type
        parts = tuple(dotted.split("."))
        for i, part in enumerate(parts):
            field = message.fields_by_name.get(part) if message is not None else None
            if field is None or field.is_repeated:
                raise RouteError(method.full_name, f"also_query {dotted!r} names no singular field")
            message = field.message_type
            if i == len(parts) - 1 and message is not None:
                raise RouteError(method.full_name, f"also_query {dotted!r} must name a scalar")
        found.append((parts, parts[-1]))
    return tuple(found)


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
