"""Signatures of inbound notifications: one failure answer whatever the cause.

- Processor notifications (`/webhooks/volcan`) and settlement reports (`/webhooks/settlements`):
  headers `X-Notification-Timestamp` (Unix seconds) and `X-Notification-Signature`
  (`v1=` + hex HMAC-SHA256 of `"{timestamp}." + raw body` with the source's secret; several
  `v1=` values separated by commas or spaces are accepted, for secret rotation).
- Stripe (`/webhooks/stripe`): Stripe's own `Stripe-Signature: t=...,v1=...` over
  `"{t}." + raw body` with the endpoint secret (`whsec_...`, used as the HMAC key as it is).

Both refuse a timestamp outside the tolerance (300 s by default) in either direction. A missing
secret, header or timestamp, a bad signature or a stale one all raise the same
NOTIFICATION_SIGNATURE_INVALID (401), so a caller learns nothing about which part was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from billing.domain.errors import BillingError

TIMESTAMP_HEADER = "x-notification-timestamp"
SIGNATURE_HEADER = "x-notification-signature"
STRIPE_HEADER = "stripe-signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"{timestamp}." + body` (what a sender puts after `v1=`)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _refused() -> BillingError:
    return BillingError("NOTIFICATION_SIGNATURE_INVALID")


def _fresh(timestamp: str | None, now: datetime, tolerance_seconds: int) -> int:
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise _refused()
    value = int(timestamp)
    if abs(now.timestamp() - value) > tolerance_seconds:
        raise _refused()
    return value


def _matches(secret: str, timestamp: int, body: bytes, candidates: list[str]) -> bool:
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def verify_notification(
    *,
    secret: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
    tolerance_seconds: int,
) -> None:
    """Check an engine-scheme signature; raises NOTIFICATION_SIGNATURE_INVALID on any problem."""
    if not secret or not signature:
        raise _refused()
    signed_at = _fresh(timestamp, now, tolerance_seconds)
    candidates = [
        part[3:] for part in signature.replace(",", " ").split() if part.startswith("v1=") and len(part) < 200
    ]
    if not _matches(secret, signed_at, body, candidates):
        raise _refused()


def verify_stripe(
    *, secret: str | None, header: str | None, body: bytes, now: datetime, tolerance_seconds: int
) -> None:
    """Check Stripe's `Stripe-Signature` header (t=..., v1=...; other schemes are ignored)."""
    if not secret or not header or len(header) > 2000:
        raise _refused()
    timestamp: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    signed_at = _fresh(timestamp, now, tolerance_seconds)
    if not _matches(secret, signed_at, body, candidates):
        raise _refused()
