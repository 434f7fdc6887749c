"""The per-IP limit on cards submitted through payment links.

Counted in the database (`payment_link_attempt`), so every API process sees the same count. The
address is stored as an HMAC keyed by the engine's token secret: the log can count an address
without holding it (plain hashes of IPv4 addresses are reversed by trying all of them).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from billing.domain.errors import BillingError
from billing.services.runtime import Runtime
from billing.store import payment_links as store
from billing.store.engine import transaction
from billing.store.models import PaymentLinkAttempt


def address_key(secret: str, address: str) -> str:
    """The stored form of an address: HMAC-SHA256 under a key derived from `secret` (hex, 64 chars)."""
    key = hmac.new(secret.encode(), b"payment-link-address", hashlib.sha256).digest()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()


async def admit_attempt(runtime: Runtime, *, address: str, trx_id: str) -> None:
    """Record one card submission from `address`, or refuse it with 7805 once the address used up
    `payment_links.ip_attempts` in the last `ip_window_minutes` (on any link)."""
    limits = runtime.settings.payment_links
    now = runtime.clock.now()
    since = now - timedelta(minutes=limits.ip_window_minutes)
    ip_key = address_key(runtime.settings.jwt_secret(), address)
    async with transaction(runtime.sessions) as session:
        if await store.attempts_since(session, ip_key, since) >= limits.ip_attempts:
            raise BillingError("PAYMENT_LINK_TOO_MANY_ATTEMPTS")
        await store.record_attempt(
            session, PaymentLinkAttempt(ip_key=ip_key, trx_id=trx_id, attempted_at=now), forget_before=since
        )
