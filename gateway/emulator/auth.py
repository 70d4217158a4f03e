"""Credentials: password hashes, HS256 JWTs, `ggt_` API keys, and bearer resolution.

Nothing here logs or stores a credential in the clear; keys are kept as
SHA-256 digests and only the first 12 characters are shown back (`prefix`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .clock import utcnow
from .errors import ApiError, unauthorized
from .ids import new_id
from .resources import ApiKey, User
from .store import Store

KEY_PREFIX = "ggt_"
_PBKDF2_ROUNDS = 20_000

CredentialKind = Literal["jwt", "api_key", "open"]


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS)
    return f"{salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    salt_hex, _, digest_hex = stored.partition("$")
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), bytes.fromhex(salt_hex), _PBKDF2_ROUNDS
    )
    return hmac.compare_digest(digest.hex(), digest_hex)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256)
    return _b64encode(mac.digest())


def encode_jwt(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JSON Web Token carrying `claims`."""
    header = _b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64encode(orjson.dumps(claims))
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_sign(signing_input, secret)}"


def decode_jwt(token: str, secret: str, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a valid, unexpired HS256 token; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_b64, payload_b64, signature = parts
    if not hmac.compare_digest(_sign(f"{header_b64}.{payload_b64}", secret), signature):
        return None
    try:
        header = orjson.loads(_b64decode(header_b64))
        claims = orjson.loads(_b64decode(payload_b64))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return None
    expiry = claims.get("exp")
    current = time.time() if now is None else now
    if not isinstance(expiry, int | float) or expiry <= current:
        return None
    return claims


def issue_token(user: User, secret: str, ttl_seconds: int) -> str:
    issued = int(time.time())
    claims = {
        "sub": user.id,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_hex(8),
    }
    return encode_jwt(claims, secret)


def digest_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_hex(20)


def make_api_key(account_id: str, name: str, key: str) -> ApiKey:
    return ApiKey(new_id("key"), account_id, name, digest_key(key), key[:12])


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, None when absent."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Invalid authentication credentials")
    return token.strip()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the account (a user) and the credential used."""

    user: User
    kind: CredentialKind
    key_id: str | None = None

    @property
    def account_id(self) -> str:
        return self.user.id


def _from_api_key(store: Store, token: str) -> Principal | None:
    key = store.api_key_by_hash(digest_key(token))
    user = None if key is None else store.users.get(key.account_id)
    if key is None or user is None:
        return None
    key.last_used_at = utcnow()
    return Principal(user, "api_key", key.id)


def _from_jwt(store: Store, token: str, secret: str) -> Principal | None:
    claims = decode_jwt(token, secret)
    user = None if claims is None else store.users.get(str(claims.get("sub")))
    return None if user is None else Principal(user, "jwt")


def open_principal(open_user: User | None, refusal: ApiError) -> Principal:
    """Open mode's stand-in for a missing or unknown credential; `refusal` without it."""
    if open_user is None:
        raise refusal
    return Principal(open_user, "open")


def authenticate(
    store: Store, header: str | None, secret: str, open_user: User | None
) -> Principal:
    """Resolve the bearer credential.

    A known key or a valid token acts as its user. In open mode (`open_user` set) a request
    without a credential, or with a bearer value that is neither (a placeholder such as
    `ggt_your_key`), acts as `open_user`; a header of another scheme is refused in any mode.
    """
    token = bearer_token(header)
    if token is None:
        return open_principal(open_user, unauthorized("Not authenticated"))
    if token.startswith(KEY_PREFIX):
        known = _from_api_key(store, token)
        return known or open_principal(open_user, unauthorized("Invalid API key"))
    known = _from_jwt(store, token, secret)
    return known or open_principal(open_user, unauthorized("Invalid or expired token"))
