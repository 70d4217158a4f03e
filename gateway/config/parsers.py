"""Parsers for setting values: text from a flag or a variable → a checked value.

Each raises ValueError with a message that says what is expected; the loader adds the
setting's name and collects every problem before it stops start-up.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str) -> HostPort:
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:50051 or [::]:50051")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    if host not in ("localhost", "0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(part.isalnum() or "-" in part for part in host.split(".")):
                raise ValueError(f"host {host!r} is neither an IP address nor a name") from None
    return HostPort(host, port)


def parse_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL such as https://api.mimoai.co")
    if parts.query or parts.fragment:
        raise ValueError("the base URL must not carry a query or fragment")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL; use GATEWAY_UPSTREAM_API_KEY")
    return text.strip().rstrip("/")


N = TypeVar("N", int, float)


def _number(
    convert: Callable[[str], N], ok: Callable[[N], bool], problem: str
) -> Callable[[str], N]:
    """A parser of numbers that ``ok`` accepts; ValueError saying ``problem`` otherwise."""

    def parse(text: str) -> N:
        value = convert(text)
        if not ok(value):
            raise ValueError(problem)
        return value

    return parse


def optional_host_port(text: str) -> HostPort | None:
    if text.strip().lower() in ("off", "none", "disabled"):
        return None
    return parse_host_port(text)


positive_int: Final = _number(int, lambda value: value >= 1, "must be at least 1")


positive_float: Final = _number(float, lambda value: value > 0, "must be greater than 0")


non_negative_float: Final = _number(float, lambda value: value >= 0, "must not be negative")


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


non_negative_int: Final = _number(int, lambda value: value >= 0, "must not be negative")


def costs(text: str) -> tuple[tuple[str, float], ...]:
    """``RunAgent=5,AgentService/ListAgents=2`` → ((method, cost), ...)."""
    found: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected METHOD=COST, not {item!r}")
        try:
            cost = float(value)
        except ValueError:
            raise ValueError(f"cost {value.strip()!r} of {name.strip()} is not a number") from None
        if not (cost >= 0 and math.isfinite(cost)):
            raise ValueError(f"cost of {name.strip()} must be a non-negative number")
        found[name.strip().lstrip("/")] = cost
    return tuple(found.items())


def redis_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError("expected redis://HOST:PORT/DB, rediss://… or unix:///path")
    return text.strip()


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def path_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def header_names(text: str) -> tuple[str, ...]:
    """Comma-separated header names, in lower case (checked by the config's cross-checks)."""
    return tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))


def pem_file(text: str) -> str:
    """A readable file holding at least one PEM block; its path."""
    path = text.strip()
    read_pem(path)
    return path


def read_pem(path: str) -> bytes:
    """The bytes of a PEM file; ValueError saying why it cannot be used."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{path} holds no PEM block (-----BEGIN …)")
    return data


def check_key_pair(cert_path: str, key_path: str) -> None:
    """ValueError unless the certificate chain and the (unencrypted) key form a pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except _EncryptedKey:
        raise ValueError(f"{key_path} is encrypted: give the key unencrypted") from None
    except (ssl.SSLError, OSError) as exc:
        detail = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ValueError(
            f"{cert_path} and {key_path} are not a certificate chain and its private key ({detail})"
        ) from None


def check_ca_bundle(pem: bytes, path: str) -> None:
    """ValueError unless ``pem`` (read from ``path``) holds certificates a TLS peer can
    be verified against."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{path} holds no usable CA certificate ({exc})") from None


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey


def secret_value(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    if any(ch in value for ch in "\r\n"):
        raise ValueError("must not contain line breaks")
    return value


def key_values(text: str) -> tuple[tuple[str, str], ...]:
    """``k1=v1,k2=v2`` with percent-encoded values (W3C baggage's format)."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        pairs.append((unquote(key.strip()), unquote(value.strip())))
    return tuple(pairs)


def names(options: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    one = choice(options)

    def parse(text: str) -> tuple[str, ...]:
        return tuple(one(part) for part in text.split(",") if part.strip())

    return parse


unit_ratio: Final = _number(
    float, lambda value: 0.0 <= value <= 1.0, "must be a ratio between 0 and 1"
)


def millis(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative (milliseconds)")
    return value / 1000.0


def endpoint_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a URL such as http://collector:4317")
    return text
