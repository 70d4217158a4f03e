"""What an upstream client needs to know: where the REST API is, whom to trust there,
and its pool's limits."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gateway.version import __version__

USER_AGENT: Final = f"gagiteck-gateway/{__version__}"
KEEPALIVE_SECONDS: Final = 30.0
"""How long an idle upstream connection is kept for reuse."""
DEFAULT_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One pool of connections to the REST API at ``base_url``."""

    base_url: str
    pool_size: int = 64
    connect_timeout: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    ca_file: str | None = None
    """PEM file of the only CAs trusted for an https origin; None: the system's CAs."""

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an https origin (hostname and chain verified), else None."""
        if not self.base_url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True, slots=True)
class Origin:
    """``base_url`` taken apart: where to connect, and the path every request starts with."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def of(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname or "", port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        """scheme://host[:port], as aiohttp's ``base_url`` wants it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"
