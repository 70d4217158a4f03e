"""Time: the current UTC instant and its rendering in the configured style."""

from __future__ import annotations

from datetime import UTC, datetime

from .config import TimestampStyle


def utcnow() -> datetime:
    return datetime.now(UTC)


def render_time(moment: datetime | None, style: TimestampStyle) -> str | None:
    """ISO 8601 with microseconds: offset-less (FastAPI-like) or with a `Z`."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    return text + "Z" if style == "z" else text
