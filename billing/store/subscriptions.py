"""Subscriptions of a client, as the merchant API reads and changes them.

State changes are conditional updates (`... WHERE status = 'active'`), so a cancellation racing a
worker or a second cancellation can never both apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import col, select

from billing.store.engine import Session
from billing.store.models import Plan, Subscription
from billing.store.owned import owned_row


async def add_subscription(session: Session, subscription: Subscription) -> Subscription:
    """Insert a new subscription (flushed)."""
    session.add(subscription)
    await session.flush()
    return subscription


async def get_subscription(session: Session, client_id: str, subscription_id: str) -> Subscription | None:
    """The client's subscription with this id; another client's is None, exactly like a missing one."""
    return await owned_row(session, Subscription, client_id, subscription_id)


# Built once (the merchant's most frequent read): a subscription and its plan in one round trip.
_SUBSCRIPTION_AND_PLAN = (
    select(Subscription, Plan)
    .outerjoin(
        Plan,
        (col(Plan.id) == col(Subscription.plan_id)) & (col(Plan.client_id) == col(Subscription.client_id)),
    )
    .where(
        col(Subscription.client_id) == bindparam("client_id"),
        col(Subscription.id) == bindparam("subscription_id"),
    )
)


async def subscription_and_plan(
    session: Session, client_id: str, subscription_id: str
) -> tuple[Subscription, Plan | None] | None:
    """The client's subscription with this id and its plan; None for a missing or another client's one."""
    params = {"client_id": client_id, "subscription_id": subscription_id}
    row = (await session.exec(_SUBSCRIPTION_AND_PLAN, params=params)).first()
    return None if row is None else (row[0], row[1])


async def subscriptions_of_user(session: Session, client_id: str, user_id: str) -> Sequence[Subscription]:
    """Every subscription of one cardholder, newest first."""
    query = (
        select(Subscription)
        .where(Subscription.client_id == client_id)
        .where(Subscription.user_id == user_id)
        .order_by(col(Subscription.created_at).desc(), col(Subscription.id).desc())
    )
    return (await session.exec(query)).all()


async def active_subscriptions_of_user(
    session: Session, client_id: str, user_id: str
) -> Sequence[Subscription]:
    """The cardholder's subscriptions whose status is `active`."""
    query = (
        select(Subscription)
        .where(Subscription.client_id == client_id)
        .where(Subscription.user_id == user_id)
        .where(Subscription.status == "active")
        .order_by(col(Subscription.created_at), col(Subscription.id))
    )
    return (await session.exec(query)).all()


async def update_if_active(session: Session, subscription: Subscription, **values: Any) -> bool:
    """Apply `values` only while the subscription is `active`; False (nothing written) otherwise.

    The object is refreshed either way, so the caller sees what the database holds.
    """
    result = await session.exec(
        update(Subscription)
        .where(col(Subscription.client_id) == subscription.client_id)
        .where(col(Subscription.id) == subscription.id)
        .where(col(Subscription.status) == "active")
        .values(**values)
    )
    await session.refresh(subscription)
    return bool(result.rowcount == 1)


async def request_grace_retry(
    session: Session, subscription: Subscription, *, grace_started_at: datetime, **values: Any
) -> bool:
    """Apply `values` only while the subscription is still in the grace episode that began at
    `grace_started_at` (active, `in_grace`); False (nothing written) otherwise.

    A retry that succeeded (or an episode that ended or restarted) since the caller read the
    row must not be followed by a retry request: that would make the next period due at once.
    The object is refreshed either way.
    """
    result = await session.exec(
        update(Subscription)
        .where(col(Subscription.client_id) == subscription.client_id)
        .where(col(Subscription.id) == subscription.id)
        .where(col(Subscription.status) == "active")
        .where(col(Subscription.renewal_status) == "in_grace")
        .where(col(Subscription.grace_started_at) == grace_started_at)
        .values(**values)
    )
    await session.refresh(subscription)
    return bool(result.rowcount == 1)


async def cancel_if_active(
    session: Session, subscription: Subscription, *, at: datetime, now: datetime
) -> bool:
    """Cancel at once: `cancelled`, retries stopped (`next_attempt_at` NULL).

    The lease is left as it is: a worker whose charge is in flight still owns the row and
    must record that charge's outcome and events (it releases the lease itself).
    """
    return await update_if_active(
        session,
        subscription,
        status="cancelled",
        renewal_status="ended",
        cancelled_at=at,
        ended_at=at,
        next_attempt_at=None,
        grace_retry_at=None,
        updated_at=now,
    )
