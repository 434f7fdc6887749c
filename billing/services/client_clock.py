"""A merchant's "now": the engine's clock plus the client's sandbox clock offset.

Every timestamp a merchant's request writes (enrolment dates, cancellation instants, when a
renewal is due, `created_at` and `updated_at` of what it creates or changes, its events) is the
client's now, so a sandbox client that advanced its clock sees one consistent simulated time.
The passes that judge whether an open charge or refund is stale compare its `updated_at` with
each client's own now (`billing.store.client_time`). Webhook scheduling and signatures, tokens,
replay windows and leases stay on the engine's clock: receivers and processors live in real time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.domain.clock import Clock, OffsetClock
from billing.domain.errors import BillingError
from billing.store import clients
from billing.store.engine import Session
from billing.store.models import Client


def merchant_clock(clock: Clock, offset_seconds: int) -> Clock:
    """The clock of a client whose sandbox clock runs `offset_seconds` ahead (the engine's own at 0)."""
    return clock if offset_seconds == 0 else OffsetClock(clock, offset_seconds)


def client_now(clock: Clock, client: Client) -> datetime:
    """The current instant for `client` (aware UTC)."""
    return clock.now() + timedelta(seconds=client.clock_offset_seconds)


async def load_client(session: Session, client_id: str) -> Client:
    """The client row behind an authenticated merchant (7046 if it vanished meanwhile)."""
    client = await clients.get_client(session, client_id)
    if client is None:
        raise BillingError("CLIENT_NOT_FOUND")
    return client
