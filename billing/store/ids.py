"""Prefixed, sortable, opaque identifiers (ULID layout: 48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {
    "client": "cli",
    "signing_key": "key",
    "plan": "pln",
    "transaction": "trx",
    "payment_method": "pm",
    "subscription": "sub",
    "charge": "chg",
    "refund": "rfd",
    "batch": "bat",
    "event": "evt",
    "webhook_endpoint": "whe",
    "webhook_delivery": "whd",
    "refresh_token": "rft",
    "notification": "ntf",
}


def ulid() -> str:
    """A 26-character Crockford base32 ULID; lexicographic order follows creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(kind: str) -> str:
    """A new id for a resource kind, e.g. ``new_id("subscription") -> "sub_01J..."``."""
    return f"{PREFIXES[kind]}_{ulid()}"
