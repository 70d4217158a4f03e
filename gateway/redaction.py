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

Clean text — almost all of it — costs a few substring checks; the regular expression runs
only when one of the markers is present.
"""

from __future__ import annotations

import re
from typing import Final

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
