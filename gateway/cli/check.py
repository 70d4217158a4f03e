"""``gagiteck-gateway check-upstream``: the drift between the contract and an upstream.

The upstream's OpenAPI document comes from ``--openapi`` (a file or an http(s) URL), or
from ``GATEWAY_UPSTREAM_URL``'s ``/openapi.json``. Every annotated RPC (the contract's,
and those of ``GATEWAY_DESCRIPTOR_SETS``) is compared with it; each drift is printed with
what it means for callers. The exit status is 1 when any drift is not in the accepted
list (gateway/transcoding/accepted_drift.txt, or ``--accepted``), 0 otherwise.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.gateway import GatewayConfig
from gateway.config.parsers import ConfigError
from gateway.server.descriptors import contract_services, descriptor_set_services
from gateway.transcoding.codec import CodecRegistry
from gateway.transcoding.drift import ACCEPTED, load_accepted, report
from gateway.transcoding.openapi import OpenApi, OpenApiError
from gateway.transcoding.routes import RouteTable

FETCH_TIMEOUT = 10.0


def check_upstream(
    config: GatewayConfig, openapi: str | None, accepted: str | None, show_accepted: bool
) -> int:
    source = openapi or (f"{config.upstream_url}/openapi.json" if config.upstream_url else None)
    if source is None:
        raise ConfigError(
            "check-upstream needs --openapi FILE|URL, or GATEWAY_UPSTREAM_URL to read its "
            "/openapi.json"
        )
    try:
        document = OpenApi(_load(source))
    except OpenApiError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    services = contract_services() + descriptor_set_services(config.descriptor_sets)
    routes = RouteTable.compile(services, CodecRegistry())
    found = report(routes, document, load_accepted(Path(accepted) if accepted else ACCEPTED))
    print(f"{source}: {document.title} {document.version}".rstrip())
    for line in found.lines(show_accepted=show_accepted):
        print(line)
    return 1 if found.unaccepted else 0


def _load(source: str) -> Mapping[str, Any]:
    """The JSON document at a path or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as answer:  # noqa: S310
            data = answer.read()
    else:
        data = Path(source).read_bytes()
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise OpenApiError(f"not JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise OpenApiError("not a JSON object")
    return parsed
