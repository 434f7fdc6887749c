"""The daily card-expiry pass: a subscription's default card that expires within the plan's
`daysNotifyExpiringCard` days gets one `payment_method.expiring` event per subscription it pays,
which queues one cardExpiring e-mail (same transaction). The card is marked noticed in that
transaction too, so the notice goes out once per card, whichever worker or day finds it first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from billing.domain.events import PaymentMethodExpiring
from billing.domain.notifications import card_expires_at, expiring_soon, months_ahead
from billing.services.runtime import Runtime
from billing.store import notifications as store
from billing.store.engine import transaction
from billing.store.events import NewEvent, insert_events, reserve_sequences

MAX_NOTIFY_DAYS = 365


async def run_expiring_cards(
    runtime: Runtime,
    identity: str,
    *,
    client_id: str | None = None,
    now_of: Callable[[int], datetime] | None = None,
) -> int:
    """Queue the expiry notices that are due; returns how many cards were noticed.

    Each client is judged at its own now (real time plus its sandbox offset) unless `now_of`
    (offset -> now) says otherwise, as the sandbox clock does when it moves.
    """
    del identity
    real_now = runtime.clock.now()
    clock = now_of or (lambda offset: real_now + timedelta(seconds=offset))
    async with transaction(runtime.sessions) as session:
        offset = await store.largest_clock_offset(session, client_id)
        latest = months_ahead(clock(offset), MAX_NOTIFY_DAYS)
        cards = await store.cards_not_yet_notified(session, latest_month=latest, client_id=client_id)
        due: dict[str, list[tuple[store.CardOnFile, datetime, datetime]]] = defaultdict(list)
        for card in cards:
            now = clock(card.clock_offset_seconds)
            expires = card_expires_at(card.exp_month, card.exp_year, card.timezone)
            if expiring_soon(expires, now, card.notify_days):
                due[card.payment_method_id].append((card, expires, now))
        won = await store.mark_expiry_notified(session, list(due), real_now)
        found = [entry for pm_id in sorted(won) for entry in due[pm_id]]
        if not found:
            return 0
        first = await reserve_sequences(session, {card.subscription_id: 1 for card, _, _ in found})
        events = [
            NewEvent(
                client_id=card.client_id,
                payload=PaymentMethodExpiring(
                    payment_method_id=card.payment_method_id,
                    subscription_id=card.subscription_id,
                    user_id=card.user_id,
                    brand=card.brand,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    expires_at=expires,
                ),
                created_at=now,
                subscription_id=card.subscription_id,
                sequence=first.get(card.subscription_id),
            )
            for card, expires, now in found
        ]
        await insert_events(session, events)
    return len(won)
