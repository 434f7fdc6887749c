"""Claiming due subscriptions with a lease, so that many workers never work on one row at once.

A claim is one statement: `UPDATE subscription SET lease_owner, lease_until WHERE id IN
(due rows whose lease is free or expired, oldest first, LIMIT n) RETURNING ...`. On
PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so concurrent claimers split
the due rows between them instead of queueing on each other. SQLite runs one writer at a
time, which makes the same conditional UPDATE atomic without any locking clause.

Leases are compared with the engine's real time; "due" is compared with the client's now
(real time plus the sandbox clock offset), which the caller passes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from billing.store.bulk import is_postgres
from billing.store.engine import Session
from billing.store.models import Client, Subscription

_SUB = Subscription.metadata.tables["subscription"]
_CLIENT = Client.metadata.tables["client"]

_CLAIMED_COLUMNS = (
    _SUB.c.id,
    _SUB.c.client_id,
    _SUB.c.user_id,
    _SUB.c.plan_id,
    _SUB.c.currency,
    _SUB.c.trx_id,
    _SUB.c.default_payment_method_id,
    _SUB.c.status,
    _SUB.c.renewal_status,
    _SUB.c.timezone,
    _SUB.c.anchor_date,
    _SUB.c.period_index,
    _SUB.c.current_period_start,
    _SUB.c.current_period_end,
    _SUB.c.cycles_paid,
    _SUB.c.trial_ends_at,
    _SUB.c.next_attempt_at,
    _SUB.c.grace_started_at,
    _SUB.c.grace_attempts,
    _SUB.c.grace_retry_at,
    _SUB.c.grace_policy,
    _SUB.c.notification_email,
)


@dataclass(frozen=True, slots=True)
class ClaimedSubscription:
    """A subscription row as it was when this worker leased it."""

    id: str
    client_id: str
    user_id: str
    plan_id: str
    currency: str
    trx_id: str | None
    default_payment_method_id: str | None
    status: str
    renewal_status: str
    timezone: str
    anchor_date: date
    period_index: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    cycles_paid: int
    trial_ends_at: datetime | None
    next_attempt_at: datetime | None
    grace_started_at: datetime | None
    grace_attempts: int
    grace_retry_at: datetime | None
    grace_policy: dict[str, Any] | None
    notification_email: str | None


def _due(
    now: datetime, real_now: datetime, client_id: str | None, subscription_id: str | None = None
) -> list[Any]:
    conditions: list[Any] = [
        _SUB.c.status == "active",
        _SUB.c.next_attempt_at <= now,
        or_(_SUB.c.lease_until.is_(None), _SUB.c.lease_until < real_now),
    ]
    if client_id is not None:
        conditions.append(_SUB.c.client_id == client_id)
    if subscription_id is not None:
        conditions.append(_SUB.c.id == subscription_id)
    return conditions


async def claim_due_subscriptions(
    session: Session,
    *,
    owner: str,
    now: datetime,
    real_now: datetime,
    lease_seconds: float,
    limit: int,
    client_id: str | None = None,
    subscription_id: str | None = None,
) -> list[ClaimedSubscription]:
    """Lease up to `limit` subscriptions due at `now` (optionally of one client, or only
    `subscription_id`) to `owner`.

    Rows leased by someone else are skipped until their lease runs out (a crashed worker's
    rows come back after `lease_seconds`).
    """
    candidates = (
        select(_SUB.c.id)
        .where(*_due(now, real_now, client_id, subscription_id))
        .order_by(_SUB.c.next_attempt_at)
        .limit(limit)
    )
    if is_postgres(session):
        candidates = candidates.with_for_update(skip_locked=True)
    chosen: list[Any] = [_SUB.c.id.in_(candidates.scalar_subquery())]
    if client_id is not None:
        chosen.append(_SUB.c.client_id == client_id)  # names the shard on Citus (docs/scaling.md)
    statement = (
        update(_SUB)
        .where(*chosen)
        .values(lease_owner=owner, lease_until=real_now + timedelta(seconds=lease_seconds))
        .returning(*_CLAIMED_COLUMNS)
    )
    conn = await session.connection()
    rows = (await conn.execute(statement)).all()
    return [ClaimedSubscription(**row._asdict()) for row in rows]


async def make_due(session: Session, subscription_id: str, *, now: datetime, real_now: datetime) -> None:
    """Make an active, unleased subscription due at `now` when it is due later (the outcome of
    its open charge became known: a processor notification). A leased row is left alone."""
    conn = await session.connection()
    await conn.execute(
        update(_SUB)
        .where(
            _SUB.c.id == subscription_id,
            _SUB.c.status == "active",
            or_(_SUB.c.lease_until.is_(None), _SUB.c.lease_until < real_now),
            or_(_SUB.c.next_attempt_at.is_(None), _SUB.c.next_attempt_at > now),
        )
        .values(next_attempt_at=now)
    )


async def release_leases(session: Session, subscription_ids: Sequence[str], owner: str) -> int:
    """Give back leases `owner` still holds (the rows become claimable at once)."""
    if not subscription_ids:
        return 0
    conn = await session.connection()
    result = await conn.execute(
        update(_SUB)
        .where(_SUB.c.id.in_(list(subscription_ids)), _SUB.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
    return int(result.rowcount)


async def extend_leases(
    session: Session, subscription_ids: Sequence[str], owner: str, *, until: datetime
) -> int:
    """Push out leases `owner` still holds to `until` (rows it released or lost are left alone)."""
    if not subscription_ids:
        return 0
    conn = await session.connection()
    result = await conn.execute(
        update(_SUB)
        .where(_SUB.c.id.in_(list(subscription_ids)), _SUB.c.lease_owner == owner)
        .values(lease_until=until)
    )
    return int(result.rowcount)


async def clients_with_clock_offset(session: Session) -> dict[str, int]:
    """Sandbox clients whose clock runs ahead of real time, with their offsets in seconds."""
    conn = await session.connection()
    rows = await conn.execute(
        select(_CLIENT.c.id, _CLIENT.c.clock_offset_seconds).where(_CLIENT.c.clock_offset_seconds > 0)
    )
    return {client_id: int(offset) for client_id, offset in rows.all()}


async def earliest_due(
    session: Session, *, client_id: str, until: datetime, real_now: datetime
) -> tuple[datetime | None, bool]:
    """The earliest `next_attempt_at <= until` of the client's active subscriptions.

    Returns `(instant, leased)`: `leased` is True when that row is leased by a worker right now.
    """
    conn = await session.connection()
    row = (
        await conn.execute(
            select(_SUB.c.next_attempt_at, _SUB.c.lease_until)
            .where(
                _SUB.c.client_id == client_id,
                _SUB.c.status == "active",
                _SUB.c.next_attempt_at <= until,
            )
            .order_by(_SUB.c.next_attempt_at)
            .limit(1)
        )
    ).first()
    if row is None:
        return None, False
    instant, lease_until = row
    return instant, lease_until is not None and lease_until >= real_now


async def count_due(session: Session, *, now: datetime, offsets: Mapping[str, int]) -> int:
    """How many subscriptions are due at real time `now` (each client at its own now), leased or not."""
    conn = await session.connection()
    total = (
        await conn.execute(
            select(func.count()).where(_SUB.c.status == "active", _SUB.c.next_attempt_at <= now)
        )
    ).scalar_one()
    for client_id, offset in offsets.items():
        # Rows due only thanks to the client's clock offset.
        total += (
            await conn.execute(
                select(func.count()).where(
                    and_(
                        _SUB.c.client_id == client_id,
                        _SUB.c.status == "active",
                        _SUB.c.next_attempt_at > now,
                        _SUB.c.next_attempt_at <= now + timedelta(seconds=offset),
                    )
                )
            )
        ).scalar_one()
    return int(total)
