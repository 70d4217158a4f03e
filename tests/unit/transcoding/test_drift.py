"""Drift between compiled routes and an OpenAPI document: every kind, on small documents."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.server.descriptors import contract_services
from gateway.transcoding.drift import (
    Drift,
    DriftKind,
    DriftReport,
    find_drift,
    load_accepted,
)
from gateway.transcoding.openapi import OpenApi, OpenApiError, path_key
from gateway.transcoding.routes import Route, RouteTable

TABLE = RouteTable.compile(contract_services())
AGENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "system_prompt": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "config": {"$ref": "#/components/schemas/AgentConfig"},
        "tools": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object", "additionalProperties": True},
        "status": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
CONFIG: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": kind}
        for name, kind in (
            ("model", "string"),
            ("max_tokens", "integer"),
            ("temperature", "number"),
            ("max_iterations", "integer"),
            ("timeout_ms", "integer"),
        )
    },
}


def document(paths: dict[str, Any], **schemas: Any) -> OpenApi:
    return OpenApi(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": paths,
            "components": {"schemas": {"Agent": AGENT, "AgentConfig": CONFIG, **schemas}},
        }
    )


def answer(schema: Any, status: str = "200") -> dict[str, Any]:
    return {status: {"content": {"application/json": {"schema": schema}}}}


def routes(*names: str) -> list[Route]:
    return [TABLE[f"/gagiteck.v1.{name}"] for name in names]


def keys(found: list[Drift]) -> list[str]:
    return [d.key for d in found]


def test_an_operation_that_matches_has_no_drift() -> None:
    doc = document(
        {
            "/v1/agents/{id}": {
                "get": {
                    "parameters": [{"name": "id", "in": "path", "required": True}],
                    "responses": answer({"$ref": "#/components/schemas/Agent"}),
                }
            }
        }
    )
    assert find_drift(routes("AgentService/GetAgent"), doc) == []


def test_answers_lose_and_miss_fields_and_kinds_differ() -> None:
    agent = {**AGENT, "properties": dict(AGENT["properties"])}
    agent["properties"]["owner"] = {"type": "string"}  # answered, no field carries it
    del agent["properties"]["tools"]  # a field the upstream never fills
    agent["properties"]["metadata"] = {"type": "string"}  # a Struct answered as a string
    doc = document(
        {"/v1/agents/{agent_id}": {"get": {"responses": answer(agent)}}},
    )
    assert keys(find_drift(routes("AgentService/GetAgent"), doc)) == [
        "AgentService/GetAgent lost-down answer.owner",
        "AgentService/GetAgent never-filled answer.tools",
        "AgentService/GetAgent shape answer.metadata",
    ]


def test_nested_objects_are_compared_too() -> None:
    config = {"type": "object", "properties": {**CONFIG["properties"], "top_p": {"type": "number"}}}
    doc = document(
        {
            "/v1/agents/{agent_id}": {
                "get": {"responses": answer({"$ref": "#/components/schemas/Agent"})}
            }
        },
        AgentConfig=config,
    )
    assert keys(find_drift(routes("AgentService/GetAgent"), doc)) == [
        "AgentService/GetAgent lost-down answer.config.top_p"
    ]


def test_request_bodies_and_queries() -> None:
    body = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "tools": {"type": "array"}},
    }
    doc = document(
        {
            "/v1/agents": {
                "get": {
                    "parameters": [
                        {"name": "limit", "in": "query"},
                        {"name": "cursor", "in": "query", "required": True},
                    ],
                    "responses": answer({"type": "object"}),
                },
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": body}}},
                    "responses": answer({"$ref": "#/components/schemas/Agent"}, "201"),
                },
            }
        }
    )
    found = keys(find_drift(routes("AgentService/ListAgents", "AgentService/CreateAgent"), doc))
    assert "AgentService/ListAgents not-settable query cursor (required: every call fails)" in found
    assert "AgentService/ListAgents lost-up query offset" in found
    assert "AgentService/CreateAgent not-settable body.title" in found
    assert "AgentService/CreateAgent lost-up body.name" in found
    assert "AgentService/CreateAgent lost-up body.id" not in found  # output only
    assert not any("body.tools" in key for key in found)


def test_a_parameter_the_upstream_reads_from_the_query_but_callers_send_in_the_body() -> None:
    doc = document(
        {
            "/v1/access/team/members": {
                "post": {
                    "parameters": [{"name": "email", "in": "query", "required": True}],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"role_id": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": answer({"type": "object", "additionalProperties": True}),
                }
            }
        }
    )
    assert keys(find_drift(routes("AccessService/InviteTeamMember"), doc)) == [
        "AccessService/InviteTeamMember misplaced query email (required: every call fails)"
    ]


def test_operations_missing_offered_and_undescribed() -> None:
    doc = document(
        {
            "/v1/agents/{agent_id}": {"get": {"responses": {"200": {"description": "free"}}}},
            "/v1/agents/{agent_id}/clone": {"post": {"responses": answer({"type": "object"})}},
        }
    )
    found = keys(find_drift(routes("AgentService/GetAgent", "AgentService/DeleteAgent"), doc))
    assert found == [
        "AgentService/DeleteAgent operation-missing DELETE /v1/agents/{agent_id}",
        "AgentService/GetAgent undescribed answer",
        "POST /v1/agents/{agent_id}/clone operation-not-offered",
    ]


def test_aliases_and_forms_are_honoured() -> None:
    """`results` is SearchResponse.data's alias; `query` and `took_ms` are deployed-form
    fields; total/limit/offset of a list the gateway pages are its own to fill."""
    strings = ("id", "type", "name", "description", "status")
    hit = {
        "type": "object",
        "properties": {**{n: {"type": "string"} for n in strings}, "score": {"type": "number"}},
    }
    doc = document(
        {
            "/v1/search": {
                "get": {
                    "parameters": [
                        {"name": n, "in": "query"} for n in ("q", "types", "status", "limit")
                    ],
                    "responses": answer(
                        {
                            "type": "object",
                            "properties": {"results": {"type": "array", "items": hit}},
                        }
                    ),
                }
            }
        }
    )
    assert find_drift(routes("SearchService/Search"), doc) == []


def test_a_bare_list_answer_of_a_paged_list() -> None:
    key = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in ("id", "name", "key", "created_at")},
    }
    doc = document(
        {"/v1/auth/api-keys": {"get": {"responses": answer({"type": "array", "items": key})}}}
    )
    assert find_drift(routes("AuthService/ListApiKeys"), doc) == []


def test_the_report_against_the_accepted_list() -> None:
    found = (
        Drift("A/B", DriftKind.LOST_UP, "body.x"),
        Drift("A/C", DriftKind.LOST_DOWN, "answer.y"),
    )
    report = DriftReport(found, frozenset({"A/B lost-up body.x", "A/Z never-filled answer.z"}))
    assert [d.key for d in report.unaccepted] == ["A/C lost-down answer.y"]
    assert report.stale == ["A/Z never-filled answer.z"]
    lines = report.lines()
    assert lines[0] == "DRIFT     A/C lost-down answer.y"
    assert lines[-1] == "2 drifts: 1 accepted, 1 not accepted"


def test_the_accepted_list_justifies_every_line() -> None:
    """Each accepted key sits under a comment, and names a drift kind."""
    from gateway.transcoding.drift import ACCEPTED

    lines = ACCEPTED.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            above = [text for text in lines[:number] if text.startswith("#")]
            assert above, f"line {number + 1} has no comment above it"
            assert any(f" {kind} " in f" {line} " for kind in DriftKind), line
    assert load_accepted()


def test_path_keys_ignore_variable_names_and_custom_verbs() -> None:
    assert path_key("get", "/v1/things/{thing_id}") == path_key("GET", "/v1/things/{id}")
    assert path_key("post", "/v1/things/{id}:archive") == ("POST", "/v1/things/{}")


@pytest.mark.parametrize("bad", [{}, {"paths": []}, []])
def test_documents_without_paths_are_refused(bad: Any) -> None:
    with pytest.raises(OpenApiError):
        OpenApi(bad)


def test_references_to_nothing_are_refused() -> None:
    doc = document(
        {"/v1/agents/{id}": {"get": {"responses": answer({"$ref": "#/components/schemas/Nope"})}}}
    )
    with pytest.raises(OpenApiError, match="resolves to nothing"):
        find_drift(routes("AgentService/GetAgent"), doc)
