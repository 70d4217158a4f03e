"""The request pipeline, outermost first:

    context      request id, route lookup, recording, error translation (the one boundary)
    faults       injected latency, errors, malformed answers, dropped connections
    limits       per-credential window and in-flight ceiling (429 + Retry-After)
    auth         bearer JWT or ggt_ key (open mode: the demo user for none or an unknown one)
    idempotency  one execution per (account, Idempotency-Key)

Control routes (`/_emulator/…`) pass through untouched by faults, limits and auth.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

import orjson
from aiohttp import web

from .auth import authenticate
from .context import (
    ROUTES_KEY,
    STATE_KEY,
    Handler,
    RequestContext,
    Route,
    attach,
    context_of,
    maybe_context,
    route_of,
    state_of,
)
from .deployed import auth as deployed_auth
from .deployed.conventions import NO_STORE, NO_STORE_MARKERS, SECURITY_HEADERS, unmatched
from .errors import ApiError, EmulatorError, RateLimited, render_error
from .faults import HTML_502, Decision, truncate_json
from .idempotency import StoredAnswer, fingerprint
from .recording import RECORDED_HEADERS, mask_secrets
from .state import EmulatorState

log = logging.getLogger("gateway.emulator")

API_PREFIX = "/v1/"


def _label(request: web.Request, route: Route | None) -> str:
    return route.label if route is not None else f"{request.method} (unmatched)"


def _decode_quietly(raw: bytes) -> Any:
    """The JSON in a body, or None when there is none or it does not parse."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _record(
    state: EmulatorState,
    request: web.Request,
    raw: bytes,
    context: RequestContext,
    response: web.StreamResponse,
) -> None:
    headers = {name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers}
    state.requests.add(
        {
            "method": request.method,
            "path": request.path,
            "route": context.label,
            "query": dict(request.query),
            "headers": headers,
            "authorization_present": "Authorization" in request.headers,
            "body": mask_secrets(_decode_quietly(raw)),
            "status": None if context.dropped else response.status,
            "dropped": context.dropped,
        }
    )


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = state_of(request)
    route = route_of(request)
    request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    context = RequestContext(request_id, route, _label(request, route))
    attach(request, context)
    if not context.control:
        state.stats.requests[context.label] += 1
    raw = b""
    try:
        raw = await request.read() if request.body_exists else b""
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not isinstance(exc, EmulatorError | web.HTTPException):
            log.exception("unexpected error answering %s %s", request.method, request.path)
        response = render_error(exc, _deployed(state))
        if _deployed(state) and isinstance(exc, web.HTTPException):
            routes = request.app[ROUTES_KEY]
            response = unmatched(request, exc, routes.keys()) or response
    if not context.control:
        _record(state, request, raw, context, response)
    return response


def _deployed(state: EmulatorState) -> bool:
    return state.dialect == "deployed"


async def standard_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: X-Request-ID and the X-RateLimit-* trio on every answer.

    The deployed dialect adds the service's security headers (and no-store caching
    under `/auth` and `/api-keys`), and sends X-RateLimit-* only when a limit is
    configured: the deployed service has none and sends none.
    """
    context = maybe_context(request)
    if context is None:
        return
    state = request.app[STATE_KEY]
    response.headers["X-Request-ID"] = context.request_id
    if _deployed(state):
        response.headers.update(SECURITY_HEADERS)
        if any(marker in request.path for marker in NO_STORE_MARKERS):
            response.headers.update(NO_STORE)
        if state.config.rate_limit_per_window is None:
            return
    quota = context.quota or state.limiter.peek(context.bucket or _bucket(request))
    response.headers.update(quota.headers())


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering; the client sees a disconnect."""
    context_of(request).dropped = True
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def _inject_error(status: int) -> ApiError:
    if status == 429:
        return RateLimited(1, "Rate limit exceeded (injected fault)")
    return ApiError(status, "Injected fault: the service is unavailable")


async def _faulted(
    request: web.Request, handler: Handler, decision: Decision
) -> web.StreamResponse:
    stats = state_of(request).stats
    if decision.delay > 0:
        stats.faults["latency"] += 1
        await asyncio.sleep(decision.delay)
    if decision.error:
        stats.faults["error"] += 1
        raise _inject_error(state_of(request).faults.faults.error_status)
    if decision.html:
        stats.faults["malformed_html"] += 1
        return web.Response(status=502, body=HTML_502, content_type="text/html")
    if decision.drop_before:
        stats.faults["drop_before"] += 1
        return _drop(request)
    response = await handler(request)
    if decision.drop_after:
        stats.faults["drop_after"] += 1
        return _drop(request)
    if decision.truncate and isinstance(response, web.Response) and not response.prepared:
        stats.faults["malformed_truncated"] += 1
        body = response.body if isinstance(response.body, bytes) else b""
        return web.Response(status=200, body=truncate_json(body), content_type="application/json")
    return response


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX) and not context_of(request).control


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    decision = state_of(request).faults.decide(request.method, request.path)
    return await _faulted(request, handler, decision)


def _bucket(request: web.BaseRequest) -> str:
    header = request.headers.get("Authorization")
    if header:
        return "cred:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return f"anon:{request.remote or 'unknown'}"


@web.middleware
async def limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    state = state_of(request)
    context = context_of(request)
    context.bucket = bucket = _bucket(request)
    context.quota = quota = state.limiter.hit(bucket)
    if not quota.allowed:
        state.stats.rate_limited += 1
        raise RateLimited(quota.retry_after)
    if not state.concurrency.acquire(bucket):
        state.stats.rate_limited += 1
        raise RateLimited(1, "Too many concurrent requests")
    try:
        return await handler(request)
    finally:
        state.concurrency.release(bucket)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = context_of(request)
    route = context.route
    if route is not None and not route.public and not route.control:
        state = state_of(request)
        header = request.headers.get("Authorization")
        resolve = deployed_auth.authenticate if _deployed(state) else authenticate
        context.principal = resolve(state.store, header, state.config.jwt_secret, state.open_user)
    return await handler(request)


def _storable(response: web.StreamResponse) -> StoredAnswer | None:
    if not isinstance(response, web.Response) or response.prepared:
        return None
    if (
        response.status >= 500
        or response.status == 429
        or not isinstance(response.body, bytes | None)
    ):
        return None
    return StoredAnswer(response.status, response.body or b"", response.content_type)


def _replay(answer: StoredAnswer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body or None)
    if answer.body and answer.content_type:
        response.content_type = answer.content_type
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _request_digest(request: web.Request) -> str:
    raw = await request.read()
    return fingerprint(request.method, request.path, _decode_quietly(raw), raw)


def _idempotency_scope(state: EmulatorState, context: RequestContext) -> str:
    """Keys are per account; in the deployed dialect, where most routes take no
    credential, an anonymous request's keys are per credential bucket instead."""
    if context.principal is not None:
        return context.principal.account_id
    if _deployed(state) and context.bucket is not None:
        return context.bucket
    return "public"


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    context = context_of(request)
    if request.method != "POST" or not key or context.route is None or context.control:
        return await handler(request)
    state = state_of(request)
    scope = _idempotency_scope(state, context)
    stored = state.idempotency.begin(scope, key, await _request_digest(request))
    if stored is not None:
        state.stats.idempotent_replays += 1
        return _replay(stored)
    try:
        response = await handler(request)
    except (EmulatorError, web.HTTPException) as exc:
        response = render_error(exc, _deployed(state))
    except BaseException:
        state.idempotency.abandon(scope, key)
        raise
    answer = _storable(response)
    if answer is None:
        state.idempotency.abandon(scope, key)
    else:
        state.idempotency.complete(scope, key, answer)
    return response


MIDDLEWARES = (
    context_middleware,
    fault_middleware,
    limit_middleware,
    auth_middleware,
    idempotency_middleware,
)
