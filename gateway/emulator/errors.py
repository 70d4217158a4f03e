"""The emulator's exceptions and how each becomes an HTTP answer.

    EmulatorError
     ├── ApiError                 documented body {"detail", "code", "status"}
     │    └── RateLimited         … plus a Retry-After header
     └── RequestValidationError   FastAPI's 422 body {"detail": [issue, ...]}

    ConfigError (config.py, a ValueError) is raised at construction, never per request.

Every error leaves a handler through `render_error`, the single place where
exceptions (ours and aiohttp's `HTTPException`) are turned into responses.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

Issue = dict[str, Any]

CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def code_for(status: int) -> str:
    """The documented error code of an HTTP status."""
    return CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")


class EmulatorError(Exception):
    """Base of the errors a handler raises to answer a request."""


class ApiError(EmulatorError):
    """An error answered with the documented body (the deployed dialect: `{"detail"}` only).

    `headers`, when given, replaces the headers the status implies.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or code_for(status)
        self._headers = headers

    def body(self, deployed: bool = False) -> dict[str, Any]:
        if deployed:
            return {"detail": self.detail}
        return {"detail": self.detail, "code": self.code, "status": self.status}

    def headers(self) -> dict[str, str]:
        if self._headers is not None:
            return dict(self._headers)
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        return {}


class RateLimited(ApiError):
    """429 with the number of seconds after which a retry may succeed."""

    def __init__(self, retry_after: int, detail: str = "Rate limit exceeded") -> None:
        super().__init__(429, detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RequestValidationError(EmulatorError):
    """422 in FastAPI's shape: a list of issues, each with loc, msg and type."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(f"{len(issues)} validation error(s)")
        self.issues = issues


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident} not found")


def conflict(detail: str) -> ApiError:
    return ApiError(409, detail)


def unauthorized(detail: str = "Not authenticated") -> ApiError:
    return ApiError(401, detail)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, detail)


def issue(loc: tuple[str | int, ...], kind: str, msg: str, value: Any, **ctx: Any) -> Issue:
    """One FastAPI (pydantic v2) validation issue."""
    entry: Issue = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    if ctx:
        entry["ctx"] = ctx
    return entry


def json_bytes_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _render_http_exception(exc: web.HTTPException, deployed: bool) -> web.Response:
    if exc.status < 400:
        return web.Response(status=exc.status, headers=exc.headers)
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    body: dict[str, Any] = {"detail": exc.reason}
    if not deployed:
        body.update(code=code_for(exc.status), status=exc.status)
    return json_bytes_response(body, exc.status, headers)


def render_error(exc: BaseException, deployed: bool = False) -> web.Response:
    """Translate any exception leaving a handler into its HTTP answer.

    `deployed`: FastAPI's bodies (`{"detail": "..."}`; a crash is a plain-text 500).
    """
    if isinstance(exc, RequestValidationError):
        return json_bytes_response({"detail": exc.issues}, 422)
    if isinstance(exc, ApiError):
        return json_bytes_response(exc.body(deployed), exc.status, exc.headers())
    if isinstance(exc, web.HTTPException):
        return _render_http_exception(exc, deployed)
    if deployed:
        return web.Response(status=500, text="Internal Server Error")
    return json_bytes_response(ApiError(500, "Internal server error").body(), 500)
