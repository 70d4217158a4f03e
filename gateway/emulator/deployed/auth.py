"""Authentication as the deployed service does it, and its `/v1/auth` endpoints.

Only the `/v1/auth/me…` and `/v1/auth/api-keys…` operations ask for a
credential (FastAPI's `HTTPBearer`): a missing or non-bearer `Authorization`
is 401 "Not authenticated" with `WWW-Authenticate: Bearer`; a bad `ggt_` key is
401 "Invalid API key", a bad token 401 "Invalid token", both without that
header. In open mode, a request without `Authorization` or with an unknown bearer
value acts as the demo user instead. Tokens carry `sub`, `email` and `exp`. Five failed
logins of one address lock it for fifteen minutes (429), whatever the password then.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from ..auth import (
    KEY_PREFIX,
    Principal,
    decode_jwt,
    digest_key,
    encode_jwt,
    hash_password,
    make_api_key,
    open_principal,
    verify_password,
)
from ..clock import utcnow
from ..errors import ApiError
from ..ids import new_id
from ..resources import User
from ..state import EmulatorState
from ..store import Store
from .data import Lockout, api_key_json, user_json
from .operations import Call, bad_request, not_found

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
_BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized(detail: str, challenge: bool = False) -> ApiError:
    return ApiError(401, detail, headers=_BEARER_CHALLENGE if challenge else {})


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def issue_token(user: User, secret: str, ttl_seconds: int) -> str:
    claims = {"sub": user.id, "email": user.email, "exp": int(time.time()) + ttl_seconds}
    return encode_jwt(claims, secret)


def authenticate(
    store: Store, header: str | None, secret: str, open_user: User | None
) -> Principal:
    """The caller of a secured operation.

    In open mode (`open_user` set) a request without `Authorization`, or with a bearer
    value that is no known key or valid token, acts as `open_user`.
    """
    token = _bearer(header)
    if token is None:
        challenge = _unauthorized("Not authenticated", challenge=True)
        return open_principal(open_user if header is None else None, challenge)
    if token.startswith(KEY_PREFIX):
        key = store.api_key_by_hash(digest_key(token))
        user = None if key is None else store.users.get(key.account_id)
        if key is None or user is None:
            return open_principal(open_user, _unauthorized("Invalid API key"))
        key.last_used_at = utcnow()
        return Principal(user, "api_key", key.id)
    claims = decode_jwt(token, secret)
    if claims is None or not isinstance(claims.get("sub"), str) or "email" not in claims:
        return open_principal(open_user, _unauthorized("Invalid token"))
    found = store.users.get(claims["sub"])
    if found is None:
        return open_principal(open_user, _unauthorized("User not found"))
    return Principal(found, "jwt")


def _user_by_email(state: EmulatorState, email: str) -> User | None:
    """Exact match on the normalised address (its local part keeps its case)."""
    return next((user for user in state.store.users.values() if user.email == email), None)


async def signup(call: Call) -> Any:
    state, body = call.state, call.body
    if _user_by_email(state, body["email"]) is not None:
        raise bad_request("Email already registered")
    now = utcnow()
    password_hash = hash_password(body["password"])
    user = User(
        new_id("user"), body["email"], body["name"], password_hash, created_at=now, updated_at=now
    )
    state.store.add_user(user)
    state.created("user")
    return user_json(user, state.style)


def _check_lockout(state: EmulatorState, email: str) -> None:
    lockout = state.deployed.lockouts.get(email)
    if lockout is None or lockout.locked_until is None:
        return
    now = utcnow()
    if now >= lockout.locked_until:
        del state.deployed.lockouts[email]
        return
    minutes = (lockout.locked_until - now).seconds // 60 + 1
    raise ApiError(429, f"Account temporarily locked. Try again in {minutes} minutes.")


def _failed_login(state: EmulatorState, email: str) -> None:
    lockout = state.deployed.lockouts.setdefault(email, Lockout())
    lockout.failures += 1
    if lockout.failures >= MAX_FAILED_LOGINS:
        lockout.locked_until = utcnow() + LOCKOUT


async def login(call: Call) -> Any:
    state, body = call.state, call.body
    email = body["email"]
    _check_lockout(state, email)
    user = _user_by_email(state, email)
    if user is None or not verify_password(body["password"], user.password_hash):
        _failed_login(state, email)
        raise _unauthorized("Invalid email or password")
    state.deployed.lockouts.pop(email, None)
    ttl = state.config.jwt_ttl_seconds
    token = issue_token(user, state.config.jwt_secret, ttl)
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl}


async def get_me(call: Call) -> Any:
    return user_json(call.principal.user, call.state.style)


async def update_me(call: Call) -> Any:
    user = call.principal.user
    if call.body["name"]:
        user.name = call.body["name"]
    user.updated_at = utcnow()
    return user_json(user, call.state.style)


async def change_password(call: Call) -> Any:
    user = call.principal.user
    if not verify_password(call.body["current_password"], user.password_hash):
        raise _unauthorized("Current password is incorrect")
    user.password_hash = hash_password(call.body["new_password"])
    user.updated_at = utcnow()
    return user_json(user, call.state.style)


def new_key() -> str:
    """`ggt_` and 32 hex digits."""
    return KEY_PREFIX + secrets.token_hex(16)


async def create_api_key(call: Call) -> Any:
    state = call.state
    key = new_key()
    record = state.store.add_api_key(
        make_api_key(call.principal.account_id, call.body["name"], key)
    )
    state.created("api_key")
    return api_key_json(record, state.style, key)


async def list_api_keys(call: Call) -> Any:
    state = call.state
    keys = reversed(state.store.api_keys.of(call.principal.account_id))
    return [api_key_json(key, state.style, key.prefix + "...") for key in keys]


async def delete_api_key(call: Call) -> Any:
    store = call.state.store
    key = store.api_keys.rows.get(call.path["key_id"])
    if key is None or key.account_id != call.principal.account_id:
        raise not_found("API key")
    store.revoke_api_key(key.account_id, key.id)
