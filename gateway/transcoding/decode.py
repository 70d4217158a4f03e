"""Reading a 2xx answer into the route's response message.

Other statuses never get here: traffic control raises them as
:class:`~gateway.errors.UpstreamHTTPError` when the answer arrives. A body that is not
JSON is described (HTML page, truncated JSON, another type) in an
:class:`~gateway.errors.UpstreamUnreadable`.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import Message

from gateway.errors import UpstreamAnswer, UpstreamUnreadable
from gateway.transcoding.json_values import TooDeep
from gateway.transcoding.routes import Route


def decode_answer(route: Route, answer: UpstreamAnswer, request: Message | None = None) -> Message:
    """The response message for a 2xx answer (UpstreamUnreadable when it is not JSON).

    The route's ``response_body`` field, or its one repeated field for an upstream that
    answers a bare list, says where the parsed JSON goes; a list the upstream did not
    page is paged by the ``request``'s limit and offset (transcoding/paging.py).
    """
    codec = route.response_codec
    if route.response_is_empty or not answer.body.strip():
        return codec.cls()
    try:
        parsed: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError as exc:
        what = _describe_unreadable(answer, exc)
        raise UpstreamUnreadable(what, answer, route.route_template) from exc
    if route.paging is not None and request is not None:
        parsed = route.paging.applied(parsed, request)
    if route.response_field:
        parsed = {route.response_field: parsed}
    elif isinstance(parsed, list) and route.list_field:
        parsed = {route.list_field: parsed}
    try:
        return codec.decode(parsed)
    except TooDeep as exc:
        what = f"the upstream answered HTTP {answer.status} with {exc}"
        raise UpstreamUnreadable(what, answer, route.route_template) from exc


def _describe_unreadable(answer: UpstreamAnswer, exc: orjson.JSONDecodeError) -> str:
    kind = answer.content_type.split(";")[0].strip() or "no content type"
    size = len(answer.body)
    if "html" in kind or answer.body.lstrip()[:1] == b"<":
        return (
            f"the upstream answered HTTP {answer.status} with an HTML page ({size} bytes), not JSON"
        )
    if "json" in kind and exc.pos >= size - 1:
        return (
            f"the upstream answered HTTP {answer.status} with truncated JSON "
            f"({size} bytes, ends before the document does)"
        )
    return f"the upstream answered HTTP {answer.status} with {kind} ({size} bytes) that is not JSON"
