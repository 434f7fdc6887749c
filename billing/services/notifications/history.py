"""What a merchant reads back: the e-mails of one of its subscriptions and what became of them."""

from __future__ import annotations

from billing.services.runtime import Runtime
from billing.services.subscriptions import get_subscription
from billing.store import notifications as store
from billing.store.models import Notification


async def notifications_of(runtime: Runtime, client_id: str, subscription_id: str) -> list[Notification]:
    """The subscription's e-mails, oldest first. Errors: 7041 unknown subscription (or another client's)."""
    async with runtime.sessions() as session:
        await get_subscription(session, client_id=client_id, subscription_id=subscription_id)
        return await store.notifications_of_subscription(session, client_id, subscription_id)
