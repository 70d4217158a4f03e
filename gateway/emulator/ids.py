"""Resource identifiers: a type prefix and random hex (`agent_3f9c1a2b4d5e`)."""

from __future__ import annotations

import secrets

PREFIXES = frozenset(
    {
        "agent",
        "wf",
        "exec",
        "run",
        "key",
        "wh",
        "mem",
        "user",
        "evt",
        "dlv",
        "team",
        "call",
        "member",
        "role",
    }
)


def new_id(prefix: str) -> str:
    assert prefix in PREFIXES, prefix
    return f"{prefix}_{secrets.token_hex(6)}"
