"""Lists by the API's convention, and paging them when the upstream did not.

A list RPC takes ``limit`` and ``offset`` and answers its items with ``total``, ``limit``
and ``offset``, as the reference API does. Some endpoints of the deployed service take no
paging parameters and answer every item — a bare JSON list, or an object without
``limit``/``offset``. Such an answer is paged here, by the caller's ``limit`` (the API's
default when 0) and ``offset``, and ``total`` says how many items there are in all, so a
caller never sees a page that ignores its request or a ``total`` of 0 beside real items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

DEFAULT_PAGE_SIZE: Final = 20
"""The page size the API applies when a caller sets none."""

_COUNTS: Final = ("total", "limit", "offset")
_INTEGER_TYPES: Final = frozenset(
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32}
)


@dataclass(frozen=True, slots=True)
class Paging:
    """How one list RPC's answer is paged when the upstream did not page it."""

    items: str
    """The answer's repeated field."""
    item_keys: tuple[str, ...]
    """The JSON names the items may come under (the field's name and its aliases)."""

    @classmethod
    def of(
        cls, request: Descriptor, response: Descriptor, items: str, aliases: tuple[str, ...]
    ) -> Paging | None:
        """The paging of a list RPC, or None when the messages do not follow the convention."""
        if not items or not all(_integer(response, name) for name in _COUNTS):
            return None
        if not (_integer(request, "limit") and _integer(request, "offset")):
            return None
        return cls(items, (items, *aliases))

    def applied(self, parsed: Any, request: Message) -> Any:
        """``parsed`` as it is when the upstream paged it, else one page of it."""
        total: Any = None
        if isinstance(parsed, list):
            items, rest = parsed, {}
        elif isinstance(parsed, dict) and "limit" not in parsed and "offset" not in parsed:
            key = next((k for k in self.item_keys if isinstance(parsed.get(k), list)), None)
            if key is None:
                return parsed
            items, total = parsed[key], parsed.get("total")
            rest = {k: v for k, v in parsed.items() if k not in self.item_keys}
        else:
            return parsed
        limit = getattr(request, "limit", 0) or DEFAULT_PAGE_SIZE
        offset = max(getattr(request, "offset", 0), 0)
        if not (isinstance(total, int) and total >= len(items)):
            total = len(items)
        return {
            **rest,
            self.items: items[offset : offset + limit],
            "total": total,
            "limit": limit,
            "offset": offset,
        }


def _integer(message: Descriptor, name: str) -> bool:
    field = message.fields_by_name.get(name)
    return field is not None and not field.is_repeated and field.type in _INTEGER_TYPES
