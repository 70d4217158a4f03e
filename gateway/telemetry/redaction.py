"""Keeping credentials out of everything the gateway writes: logs, spans, error messages.

The gateway never puts a header value, a request body or a configured secret into a log
record, a span attribute or a metric label in the first place; this module is the net
under that rule for text that comes from elsewhere (an upstream's error detail, an
exception's message, a caller's request id). A :class:`Redactor` replaces

* ``ggt_…`` API keys, ``whsec_…`` webhook secrets and JSON Web Tokens;
* a credential after ``Bearer`` / ``Basic`` / ``Token`` (8 characters or more, so that
  "Bearer token required" stays readable);
* the value after ``authorization``, ``api_key``, ``secret``, ``password``, ``token`` and
  similar names (``name=value``, ``name: value``, ``"name": "value"``), and whole cookies;
* the exact secrets the gateway was configured with (a :class:`Redactor` built from the
  configuration): its own upstream API key and the webhook secret, whatever they look like.

:func:`redact_status` applies it to a finished call's status: its message and every string
of its ``google.rpc.Status`` details, since upstream error texts reach callers there.

Clean text — almost all of it — costs a few substring checks; the regular expression runs
only when one of the markers is present.
"""

from __future__ import annotations

import re
from typing import Any, Final

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.status import CallStatus

REDACTED: Final = "[REDACTED]"

_MARKERS: Final = (
    "ggt_",
    "whsec_",
    "eyj",
    "earer",
    "asic ",
    "oken",
    "uthoriz",
    "ookie",
    "ecret",
    "asswor",
    "pi_key",
    "pi-key",
    "pikey",
)
"""Lower-case pieces of everything the pattern can match; clean text has none of them."""

_CREDENTIAL: Final = r"[A-Za-z0-9_\-.~+/=]{8,}"

_PATTERN: Final = re.compile(
    rf"""
    (?P<token>\b(?:ggt|whsec)_[A-Za-z0-9_\-.~+/=]+)
  | (?P<jwt>\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)
  | (?P<cookie>\b(?:set-)?cookie["']?\s*[:=]\s*)[^\r\n"]+
  | (?P<named>
        \b(?:authorization|proxy-authorization|x-api-key|api[_-]?key|access[_-]?token
          |refresh[_-]?token|client[_-]?secret|secret|password|token)
        ["']?\s*[:=]\s*["']?
    )(?:(?:bearer|basic|token)\s+)?(?!\[REDACTED\])[^\s"',;&}}]+
  | (?P<scheme>\b(?:bearer|basic|token)\s+){_CREDENTIAL}
    """,
    re.IGNORECASE | re.VERBOSE,
)


class Redactor:
    """Redacts the patterns above and the exact ``secrets`` it was given."""

    __slots__ = ("_secret_bytes", "_secrets")

    def __init__(self, secrets: tuple[str | None, ...] = ()) -> None:
        # Very short values would redact ordinary words; real keys are long.
        self._secrets = tuple(s for s in secrets if s and len(s) >= 6)
        self._secret_bytes = tuple(s.encode() for s in self._secrets)

    def __call__(self, text: str) -> str:
        """``text`` with every credential-looking part replaced by ``[REDACTED]``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        lowered = text.lower()
        for marker in _MARKERS:
            if marker in lowered:
                return _PATTERN.sub(_replace, text)
        return text

    def suspects(self, data: bytes) -> bool:
        """Whether serialized bytes might hold something this redactor would change."""
        if any(secret in data for secret in self._secret_bytes):
            return True
        lowered = data.lower()
        return any(marker in lowered for marker in _MARKER_BYTES)


_MARKER_BYTES: Final = tuple(m.encode() for m in _MARKERS)

redact: Final = Redactor()
"""The patterns alone, for text written before the configuration is known."""


def _replace(match: re.Match[str]) -> str:
    for prefix in ("cookie", "named", "scheme"):
        kept = match.group(prefix)
        if kept is not None:
            return kept + REDACTED
    return REDACTED


# --------------------------------------------------------------------------- statuses


def redact_status(status: CallStatus, redact: Redactor) -> CallStatus:
    """The status with anything credential-like taken out of its message and details.

    Upstream error texts reach the caller through here; they are checked with a few
    substring tests and only rewritten when one of them hits.
    """
    details = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    message = redact(status.message)
    suspect = any(isinstance(d, bytes) and redact.suspects(d) for d in details)
    if message == status.message and not suspect:
        return status
    trailing: list[tuple[str, str | bytes]] = []
    for key, value in status.trailing_metadata:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            rich = status_pb2.Status.FromString(value)
            rich.message = message
            for packed in rich.details:
                detail = _unpack(packed)
                if detail is not None:
                    _scrub(detail, redact)
                    packed.Pack(detail)
            value = rich.SerializeToString()
        trailing.append((key, value))
    return CallStatus(status.code, message, tuple(trailing))


def _unpack(packed: Any) -> Message | None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:
        return None
    detail: Message = message_factory.GetMessageClass(descriptor)()
    packed.Unpack(detail)
    return detail


def _scrub(message: Message, redact: Redactor) -> None:
    """Redact every string in ``message``, nested messages and maps included."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [redact(v) for v in value]
            else:
                setattr(message, field.name, redact(value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _scrub_messages(field, value, redact)


def _scrub_messages(field: FieldDescriptor, value: Any, redact: Redactor) -> None:
    entry = field.message_type
    assert entry is not None
    if entry.GetOptions().map_entry:
        if entry.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING:
            for key in list(value):
                value[key] = redact(value[key])
        else:
            for item in value.values():
                _scrub(item, redact)
    elif field.is_repeated:
        for item in value:
            _scrub(item, redact)
    else:
        _scrub(value, redact)
