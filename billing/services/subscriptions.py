"""Subscriptions as a merchant reads and changes them: list, detail, notification e-mail,
cancellation and payment history.

Subscriptions are created only by verify-card (`enrolment`); the renewal engine moves them
through renewals and grace. A merchant can change one thing, the notification e-mail, and can
cancel: at once, with retries stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from billing.domain.calendar import is_beyond_term
from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.events import SubscriptionCancelled
from billing.services.client_clock import client_now, load_client
from billing.services.event_payloads import subscription_event
from billing.store import charges as charge_store
from billing.store import events
from billing.store import payment_methods as method_store
from billing.store import subscriptions as store
from billing.store.engine import Session
from billing.store.models import Charge, PaymentMethod, Plan, Subscription


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription with what its API representation needs beyond the row."""

    subscription: Subscription
    cards: list[PaymentMethod]  # the active cards behind it: default first, then fallbacks in order
    next_renewal_date: datetime | None

    @property
    def payment_method_ids(self) -> list[str]:
        """The ids of `cards`: default first, then the fallbacks in order."""
        return [card.id for card in self.cards]

    @property
    def fallback_cards(self) -> list[PaymentMethod]:
        """The cards charged after the default fails, in order."""
        return [card for card in self.cards if card.id != self.subscription.default_payment_method_id]


async def _view(
    session: Session, subscription: Subscription, plans: dict[str, Plan | None]
) -> SubscriptionView:
    if subscription.plan_id not in plans:
        plans[subscription.plan_id] = await session.get(Plan, subscription.plan_id)
    plan = plans[subscription.plan_id]
    return SubscriptionView(
        subscription=subscription,
        cards=await method_store.cards_of_subscription(session, subscription),
        next_renewal_date=next_renewal_date(subscription, plan),
    )


def next_renewal_date(subscription: Subscription, plan: Plan | None) -> datetime | None:
    """When the next charge is due (the end of the paid or trial period), or None.

    None once the subscription stopped (cancelled, inactive, expired) and when the period paid
    is the last of a fixed term: what follows is expiry, not a renewal.
    """
    if subscription.status != "active":
        return None
    if plan is not None and is_beyond_term(subscription.period_index + 1, plan.cycles):
        return None
    return subscription.current_period_end


async def get_subscription(session: Session, *, client_id: str, subscription_id: str) -> Subscription:
    """The client's subscription, or 7041 SUBSCRIPTION_NOT_FOUND (also for another client's)."""
    subscription = await store.get_subscription(session, client_id, subscription_id)
    if subscription is None:
        raise BillingError("SUBSCRIPTION_NOT_FOUND", field="subscriptionId")
    return subscription


async def subscription_detail(session: Session, *, client_id: str, subscription_id: str) -> SubscriptionView:
    """One subscription with its payment methods and next renewal date."""
    found = await store.subscription_and_plan(session, client_id, subscription_id)
    if found is None:
        raise BillingError("SUBSCRIPTION_NOT_FOUND", field="subscriptionId")
    subscription, plan = found
    return await _view(session, subscription, {subscription.plan_id: plan})


async def list_subscriptions(session: Session, *, client_id: str, user_id: str) -> list[SubscriptionView]:
    """Every subscription of one cardholder, newest first (all statuses)."""
    plans: dict[str, Plan | None] = {}
    return [
        await _view(session, s, plans) for s in await store.subscriptions_of_user(session, client_id, user_id)
    ]


async def update_notification_email(
    session: Session, clock: Clock, *, client_id: str, subscription_id: str, email: str | None
) -> SubscriptionView:
    """Change (or, with None, clear) where the subscription's notifications are e-mailed."""
    subscription = await get_subscription(session, client_id=client_id, subscription_id=subscription_id)
    subscription.notification_email = email
    subscription.updated_at = clock.now()
    await session.flush()
    return await _view(session, subscription, {})


async def cancel_subscription(
    session: Session, clock: Clock, *, client_id: str, subscription_id: str
) -> SubscriptionView:
    """Cancel now: `cancelled`, no further renewals or retries, `subscription.cancelled` written.

    Raises 7041 for an unknown id and 7050 STATE_CONFLICT when the subscription is not active
    (already cancelled, inactive or expired).
    """
    subscription = await get_subscription(session, client_id=client_id, subscription_id=subscription_id)
    client = await load_client(session, client_id)
    now = client_now(clock, client)
    if not await store.cancel_if_active(session, subscription, at=now, now=now):
        raise BillingError(
            "STATE_CONFLICT",
            message=f"The subscription is {subscription.status}; only active subscriptions can be cancelled.",
            field="subUid",
        )
    await events.record_event(
        session,
        client_id=client_id,
        payload=subscription_event(SubscriptionCancelled, subscription),
        now=now,
        subscription_id=subscription.id,
    )
    return await _view(session, subscription, {})


async def payment_history(session: Session, *, client_id: str, subscription_id: str) -> Sequence[Charge]:
    """The subscription's charges, newest first: enrolment, renewals, retries and on-demand."""
    subscription = await get_subscription(session, client_id=client_id, subscription_id=subscription_id)
    return await charge_store.charges_of_subscription(session, subscription.id)
