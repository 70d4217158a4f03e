"""Drift between the contract and an upstream: what callers would lose, and where.

:func:`find_drift` compares every compiled route with the matching operation of an
upstream's OpenAPI document (:mod:`gateway.transcoding.openapi`): the path and verb, the
query parameters, the request body's properties and the answer's properties, by name or
by a field's declared aliases, recursively through nested objects. Each difference is a
:class:`Drift` of one :class:`DriftKind`, which says what it means for callers.

Fields that the contract marks as belonging to one form of the API
(``(gagiteck.v1.field).form``) may be absent from a document without drift; output-only
fields are not compared on the way up, input-only ones not on the way down; the counts of
a list the gateway pages itself (``total``, ``limit``, ``offset``) are filled by the
gateway. A committed list of accepted drift (:func:`load_accepted`) says which of the
rest are known and why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gagiteck.v1 import upstream_pb2
from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.transcoding.codec import field_rule
from gateway.transcoding.json_values import EMPTY, LIST_VALUE, STRUCT, TIMESTAMP, VALUE
from gateway.transcoding.openapi import OpenApi, Operation, Shape, path_key
from gateway.transcoding.routes import Route

ACCEPTED: Final = Path(__file__).with_name("accepted_drift.txt")
"""The drift accepted for the contract's own services, each line justified above it."""


class DriftKind(enum.StrEnum):
    OPERATION_MISSING = "operation-missing"
    OPERATION_NOT_OFFERED = "operation-not-offered"
    LOST_UP = "lost-up"
    NOT_SETTABLE = "not-settable"
    MISPLACED = "misplaced"
    LOST_DOWN = "lost-down"
    NEVER_FILLED = "never-filled"
    SHAPE = "shape"
    UNDESCRIBED = "undescribed"


MEANINGS: Final[Mapping[DriftKind, str]] = {
    DriftKind.OPERATION_MISSING: "the upstream has no such operation: every call fails",
    DriftKind.OPERATION_NOT_OFFERED: "the upstream offers an operation no RPC reaches",
    DriftKind.LOST_UP: "lost on the way up: callers set it, the upstream does not read it",
    DriftKind.NOT_SETTABLE: "the upstream reads it, no field of the contract carries it",
    DriftKind.MISPLACED: "the upstream reads it elsewhere (query, not body): it is lost",
    DriftKind.LOST_DOWN: "lost on the way down: the upstream answers it, no field carries it",
    DriftKind.NEVER_FILLED: "the upstream never answers it: callers always see its default",
    DriftKind.SHAPE: "the kinds of value differ: it is dropped or mangled in transit",
    DriftKind.UNDESCRIBED: "the upstream declares no schema for it: it cannot be checked",
}


@dataclass(frozen=True, slots=True, order=True)
class Drift:
    rpc: str
    """The RPC (``AgentService/GetAgent``), or the operation for one no RPC reaches."""
    kind: DriftKind
    where: str
    """What differs, e.g. ``query limit``, ``body steps[].type``, ``answer.results``."""

    @property
    def key(self) -> str:
        """How the drift is named in the accepted list."""
        return " ".join(part for part in (self.rpc, str(self.kind), self.where) if part)

    @property
    def meaning(self) -> str:
        return MEANINGS[self.kind]


class UpstreamDrift(Exception):
    """The upstream drifts from the contract in ways not accepted (GATEWAY_CHECK_UPSTREAM=fail)."""


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The drift found, against the accepted list."""

    found: tuple[Drift, ...]
    accepted: frozenset[str]

    @property
    def unaccepted(self) -> list[Drift]:
        return [d for d in self.found if d.key not in self.accepted]

    @property
    def stale(self) -> list[str]:
        """Accepted keys that were not found (the upstream changed: drop them)."""
        seen = {d.key for d in self.found}
        return sorted(k for k in self.accepted if k not in seen)

    def lines(self, *, show_accepted: bool = False) -> list[str]:
        out: list[str] = []
        for drift in self.found:
            accepted = drift.key in self.accepted
            if accepted and not show_accepted:
                continue
            out.append(f"{'accepted' if accepted else 'DRIFT':<8}  {drift.key}")
            out.append(f"          {drift.meaning}")
        out.extend(f"stale     {key}  (accepted, no longer found)" for key in self.stale)
        out.append(
            f"{len(self.found)} drifts: {len(self.found) - len(self.unaccepted)} accepted, "
            f"{len(self.unaccepted)} not accepted"
        )
        return out


def report(routes: Iterable[Route], document: OpenApi, accepted: set[str]) -> DriftReport:
    return DriftReport(tuple(find_drift(routes, document)), frozenset(accepted))


def load_accepted(path: Path = ACCEPTED) -> set[str]:
    """The drift keys in ``path``: one a line; ``#`` comments and blank lines skipped."""
    accepted = set()
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            accepted.add(" ".join(text.split()))
    return accepted


def find_drift(routes: Iterable[Route], document: OpenApi) -> list[Drift]:
    """Every drift between the routes and the document, sorted."""
    checker = _Checker(document)
    matched: set[tuple[str, str]] = set()
    for route in routes:
        key = path_key(route.http_method, route.template)
        if key in document.operations:
            matched.add(key)
        checker.route(route, document.operations.get(key))
    for operation in document.unmatched(matched):
        checker.found.append(Drift(operation.label, DriftKind.OPERATION_NOT_OFFERED, ""))
    return sorted(set(checker.found))


# --------------------------------------------------------------------------- the comparison

_PAGING_COUNTS: Final = frozenset({"total", "limit", "offset"})
_FREE_FORM: Final = frozenset({STRUCT, VALUE})
_MAX_DEPTH: Final = 8


class _Checker:
    def __init__(self, document: OpenApi) -> None:
        self.doc = document
        self.found: list[Drift] = []

    def route(self, route: Route, operation: Operation | None) -> None:
        rpc = route.full_method.lstrip("/").rpartition(".")[2]
        if operation is None:
            self.found.append(Drift(rpc, DriftKind.OPERATION_MISSING, route.route_template))
            return
        misplaced = self._query(rpc, route, operation)
        self._body(rpc, route, operation, misplaced)
        self._answer(rpc, route, operation)

    # -- the way up

    def _query(self, rpc: str, route: Route, operation: Operation) -> set[str]:
        """Compare the query parameters; returns the body fields the upstream reads from
        the query instead (misplaced)."""
        request = route.request_codec.descriptor
        ours = {name: request.fields_by_name[name] for name in route.query_fields}
        also = {name for _, name in route.also_query}
        theirs = {p.name: p for p in operation.parameters if p.where == "query"}
        body = {f.name for f in _body_fields(route)}
        misplaced: set[str] = set()
        for name, parameter in sorted(theirs.items()):
            if name in ours or name in also:
                continue
            kind = DriftKind.MISPLACED if name in body else DriftKind.NOT_SETTABLE
            if kind is DriftKind.MISPLACED:
                misplaced.add(name)
            required = " (required: every call fails)" if parameter.required else ""
            self.found.append(Drift(rpc, kind, f"query {name}{required}"))
        for name, field in sorted(ours.items()):
            if name not in theirs and not _of_one_form(field):
                self.found.append(Drift(rpc, DriftKind.LOST_UP, f"query {name}"))
        return misplaced

    def _body(self, rpc: str, route: Route, operation: Operation, misplaced: set[str]) -> None:
        fields = [f for f in _body_fields(route) if not _output_only(f)]
        also_sent = _also_sent(route) | misplaced
        if operation.body is None:
            for field in fields:
                if field.name not in also_sent and not _of_one_form(field):
                    self.found.append(Drift(rpc, DriftKind.LOST_UP, f"body {field.name}"))
            return
        skip = set(route.body_extras) | misplaced
        self._compare(rpc, fields, operation.body, "body", up=True, skip=skip, depth=0)

    # -- the way down

    def _answer(self, rpc: str, route: Route, operation: Operation) -> None:
        answer = _answer_message(route)
        if answer is None or answer.full_name == EMPTY:
            return
        if operation.answer is None:
            self.found.append(Drift(rpc, DriftKind.UNDESCRIBED, "answer"))
            return
        fields = list(answer.fields)
        shape = self.doc.shape(operation.answer)
        gateway_filled = _PAGING_COUNTS if route.paging is not None else frozenset()
        if shape.kind == "array" and route.list_field:
            items = answer.fields_by_name[route.list_field]
            for field in fields:
                if field is items or field.name in gateway_filled or _of_one_form(field):
                    continue
                self.found.append(Drift(rpc, DriftKind.NEVER_FILLED, f"answer.{field.name}"))
            if items.message_type is not None:
                self._compare(
                    rpc, list(items.message_type.fields), shape.items, "answer[]", False, set(), 1
                )
            return
        self._compare(rpc, fields, operation.answer, "answer", False, set(gateway_filled), 0)

    # -- one object against one schema

    def _compare(
        self,
        rpc: str,
        fields: list[FieldDescriptor],
        schema: Any,
        where: str,
        up: bool,
        skip: set[str],
        depth: int,
    ) -> None:
        shape = self.doc.shape(schema)
        if shape.kind != "object" or shape.properties is None or depth > _MAX_DEPTH:
            return
        properties = shape.properties
        claimed: set[str] = set(skip)
        for field in fields:
            if (up and _output_only(field)) or (not up and _input_only(field)):
                continue
            names = [n for n in (field.name, *field_rule(field).aliases) if n in properties]
            fitting = [n for n in names if _fits(field, self.doc.shape(properties[n]))]
            if fitting:
                claimed.add(fitting[0])
                self._nested(rpc, field, properties[fitting[0]], f"{where}.{fitting[0]}", up, depth)
            elif names:
                claimed.update(names)
                self.found.append(Drift(rpc, DriftKind.SHAPE, f"{where}.{names[0]}"))
            elif field.name not in skip and not _of_one_form(field):
                kind = DriftKind.LOST_UP if up else DriftKind.NEVER_FILLED
                self.found.append(Drift(rpc, kind, f"{where}.{field.name}"))
        for name in sorted(set(properties) - claimed):
            kind = DriftKind.NOT_SETTABLE if up else DriftKind.LOST_DOWN
            self.found.append(Drift(rpc, kind, f"{where}.{name}"))

    def _nested(
        self, rpc: str, field: FieldDescriptor, schema: Any, where: str, up: bool, depth: int
    ) -> None:
        message = field.message_type
        if message is None or message.full_name in (*_FREE_FORM, LIST_VALUE, TIMESTAMP):
            return
        if message.GetOptions().map_entry:
            return
        shape = self.doc.shape(schema)
        if field.is_repeated and shape.kind == "array":
            self._compare(
                rpc, list(message.fields), shape.items, where + "[]", up, set(), depth + 1
            )
        elif not field.is_repeated:
            self._compare(rpc, list(message.fields), schema, where, up, set(), depth + 1)


def _body_fields(route: Route) -> list[FieldDescriptor]:
    request = route.request_codec.descriptor
    if route.body_field == "*":
        return [f for f in request.fields if f.name not in route.bound_fields]
    if not route.body_field:
        return []
    body = request.fields_by_name[route.body_field]
    if body.message_type is None:
        return [body]
    return list(body.message_type.fields)


def _also_sent(route: Route) -> set[str]:
    """Names of body fields that also go as query parameters (``also_query``)."""
    if route.body_field == "*":
        return {path[0] for path, _ in route.also_query}
    return {
        path[1] for path, _ in route.also_query if path[0] == route.body_field and len(path) > 1
    }


def _answer_message(route: Route) -> Descriptor | None:
    if route.sse is not None:
        member = route.sse.members.get(route.sse.json_event)
        return member.codec.descriptor if member is not None else None
    response = route.response_codec.descriptor
    if route.response_field:
        return response.fields_by_name[route.response_field].message_type
    return response


def _fits(field: FieldDescriptor, shape: Shape) -> bool:
    """Whether a field can carry a value of ``shape``."""
    if shape.kind == "any":
        return True
    message = field.message_type
    if field.is_repeated and not (message is not None and message.GetOptions().map_entry):
        return shape.kind == "array"
    if message is None:
        return shape.kind == "scalar"
    name = message.full_name
    if name == VALUE:
        return True
    if name == LIST_VALUE:
        return shape.kind == "array"
    if name == TIMESTAMP:
        return shape.kind == "scalar"
    return shape.kind in ("object", "map")


def _behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _output_only(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.OUTPUT_ONLY in _behaviors(field)


def _input_only(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.INPUT_ONLY in _behaviors(field)


def _of_one_form(field: FieldDescriptor) -> bool:
    """Whether the contract says only one form of the API has this field."""
    return field_rule(field).form != upstream_pb2.UPSTREAM_FORM_UNSPECIFIED
