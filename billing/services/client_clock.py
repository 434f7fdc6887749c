"""A merchant's "now": the engine's clock plus the client's sandbox clock offset.

Business time (enrolment dates, cancellation instants, when a renewal is due) is the client's
now, so a sandbox client that advanced its clock enrols and cancels in its own simulated time.
Bookkeeping timestamps (`created_at`, `updated_at`) stay on the engine's clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.store import clients
from billing.store.engine import Session
from billing.store.models import Client


def client_now(clock: Clock, client: Client) -> datetime:
    """The current instant for `client` (aware UTC)."""
    return clock.now() + timedelta(seconds=client.clock_offset_seconds)


async def load_client(session: Session, client_id: str) -> Client:
    """The client row behind an authenticated merchant (7046 if it vanished meanwhile)."""
    client = await clients.get_client(session, client_id)
    if client is None:
        raise BillingError("CLIENT_NOT_FOUND")
    return client
