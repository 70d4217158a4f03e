"""Headers the deployed service puts on its answers (its security middleware)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from aiohttp import web

SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
        "font-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
}

# Answers whose path contains one of these are marked not to be cached.
NO_STORE_MARKERS = ("/auth", "/api-keys")
NO_STORE: dict[str, str] = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}


@functools.lru_cache(maxsize=256)
def _template(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path))
    return re.compile(pattern + "$")


def _matches(path: str, templates: Iterable[str]) -> bool:
    return any(_template(template).match(path) for template in templates)


def unmatched(
    request: web.Request, exc: Exception, routes: Iterable[tuple[str, str]]
) -> web.Response | None:
    """Starlette's answers when no route takes a request, where they differ from aiohttp's.

    - A path that matches only with its trailing slash toggled is redirected there
      (307, the query kept).
    - 405 names in `Allow` only the method of the first route (in declaration
      order) whose path matches.
    """
    table = list(routes)
    if isinstance(exc, web.HTTPNotFound):
        path = request.path
        if path == "/":
            return None
        toggled = path.rstrip("/") if path.endswith("/") else path + "/"
        if toggled and _matches(toggled, (template for _, template in table)):
            location = str(request.url.with_path(toggled).with_query(request.url.query))
            return web.Response(status=307, headers={"Location": location})
        return None
    if isinstance(exc, web.HTTPMethodNotAllowed):
        first = next((m for m, template in table if _template(template).match(request.path)), None)
        if first is not None:
            body = b'{"detail":"Method Not Allowed"}'
            return web.Response(
                status=405, body=body, content_type="application/json", headers={"Allow": first}
            )
    return None
