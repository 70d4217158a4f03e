"""``GATEWAY_CHECK_UPSTREAM``: the drift check against the live upstream, at start.

The upstream's ``/openapi.json`` is read through the unary client once the pools are
open; each drift not in the accepted list is logged (``warn``) or stops start-up
(``fail``). A document that cannot be read is said the same way.
"""

from __future__ import annotations

import logging

import orjson

from gateway.call import new_request_id
from gateway.errors import GatewayError
from gateway.transcoding.drift import ACCEPTED, UpstreamDrift, load_accepted, report
from gateway.transcoding.openapi import OpenApi, OpenApiError
from gateway.transcoding.routes import RouteTable
from gateway.upstream.request import UpstreamRequest
from gateway.upstream.unary import UnaryClient

log = logging.getLogger("gateway.server")

OPENAPI_PATH = "/openapi.json"
FETCH_TIMEOUT = 10.0


async def check_upstream(mode: str, client: UnaryClient, routes: RouteTable) -> None:
    """Compare ``routes`` with the upstream's document; ``mode`` is ``warn`` or ``fail``."""
    source = client.base_url + OPENAPI_PATH
    try:
        document = await _document(client)
    except (GatewayError, OpenApiError) as exc:
        _say(mode, f"cannot read the upstream's OpenAPI document at {source}: {exc}")
        return
    found = report(routes, document, load_accepted(ACCEPTED))
    for drift in found.unaccepted:
        log.warning("upstream drift: %s (%s)", drift.key, drift.meaning)
    if found.unaccepted:
        _say(mode, f"{len(found.unaccepted)} drifts from the contract at {source}, not accepted")
    else:
        log.info("upstream matches the contract", extra={"openapi": source})


async def _document(client: UnaryClient) -> OpenApi:
    request = UpstreamRequest(
        "GET", OPENAPI_PATH, f"GET {OPENAPI_PATH}", {"X-Request-ID": new_request_id()}
    )
    answer = await client.send(request, FETCH_TIMEOUT)
    if answer.status != 200:
        raise OpenApiError(f"HTTP {answer.status}")
    try:
        return OpenApi(orjson.loads(answer.body))
    except orjson.JSONDecodeError as exc:
        raise OpenApiError(f"not JSON ({exc})") from exc


def _say(mode: str, problem: str) -> None:
    if mode == "fail":
        raise UpstreamDrift(problem + " (GATEWAY_CHECK_UPSTREAM=fail)")
    log.warning(problem)
