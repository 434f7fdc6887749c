"""Bulk writes of the renewal pass: the new state of each subscription once its renewal step is
done, and the look-ups of renewal charges whose outcome must be reconciled.

Everything here works on a whole batch in a few statements (executemany, IN lists), because
the pass handles thousands of subscriptions a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, or_, select, text, update

from billing.store.bulk import Column, array_literal, is_postgres, json_text, update_rows
from billing.store.client_time import touched_before
from billing.store.engine import Session
from billing.store.models import Charge, PaymentMethod, Plan, Subscription

_SUB = Subscription.metadata.tables["subscription"]
_PLAN = Plan.metadata.tables["plan"]
_METHOD = PaymentMethod.metadata.tables["payment_method"]
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class LockedSubscription:
    """A leased row re-read under lock when its outcome is written.

    `first_sequence` is the first of the event sequence numbers reserved for this write.
    """

    id: str
    status: str
    default_payment_method_id: str | None
    first_sequence: int


@dataclass(frozen=True, slots=True)
class SubscriptionUpdate:
    """The new renewal state of one subscription; the lease is released with it."""

    id: str
    status: str
    renewal_status: str
    period_index: int
    cycles_paid: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    next_attempt_at: datetime | None
    grace_started_at: datetime | None
    grace_attempts: int
    grace_deadline: datetime | None
    grace_retry_at: datetime | None
    grace_policy: dict[str, Any] | None
    ended_at: datetime | None
    updated_at: datetime


async def lock_for_outcome(
    session: Session,
    owner: str,
    events_if_active: Mapping[str, int],
    events_otherwise: Mapping[str, int] | None = None,
) -> dict[str, LockedSubscription]:
    """Re-take the rows `owner` still leases, reserving event sequence numbers on each.

    A row still `active` reserves `events_if_active[id]` numbers, any other row (cancelled
    while its charge was in flight) `events_otherwise.get(id, 0)`. One UPDATE ... RETURNING
    per chunk: it locks the rows until commit (PostgreSQL) or runs under the write lock
    (SQLite), so the status and default method read here cannot change before this
    transaction writes. Rows whose lease was lost are missing from the answer.
    """
    events_otherwise = events_otherwise or {}
    if is_postgres(session):
        return await _lock_for_outcome_postgres(session, owner, events_if_active, events_otherwise)
    conn = await session.connection()
    locked: dict[str, LockedSubscription] = {}
    ids = list(events_if_active)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        if_active = {sub_id: events_if_active[sub_id] for sub_id in chunk}
        otherwise = {sub_id: events_otherwise.get(sub_id, 0) for sub_id in chunk}
        bump: Any = 0
        if any(if_active.values()) or any(otherwise.values()):
            bump = case(
                (_SUB.c.status == "active", case(if_active, value=_SUB.c.id, else_=0)),
                else_=case(otherwise, value=_SUB.c.id, else_=0),
            )
        rows = await conn.execute(
            update(_SUB)
            .where(_SUB.c.id.in_(chunk), _SUB.c.lease_owner == owner)
            .values(event_seq=_SUB.c.event_seq + bump)
            .returning(_SUB.c.id, _SUB.c.status, _SUB.c.default_payment_method_id, _SUB.c.event_seq)
        )
        for sub_id, status, default_method, last_seq in rows.all():
            reserved = if_active[sub_id] if status == "active" else otherwise[sub_id]
            locked[sub_id] = LockedSubscription(sub_id, status, default_method, last_seq - reserved + 1)
    return locked


_WRITE_STATE = (
    update(_SUB)
    .where(_SUB.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        renewal_status=bindparam("b_renewal_status"),
        period_index=bindparam("b_period_index"),
        cycles_paid=bindparam("b_cycles_paid"),
        current_period_start=bindparam("b_current_period_start"),
        current_period_end=bindparam("b_current_period_end"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        grace_started_at=bindparam("b_grace_started_at"),
        grace_attempts=bindparam("b_grace_attempts"),
        grace_deadline=bindparam("b_grace_deadline"),
        grace_retry_at=bindparam("b_grace_retry_at"),
        grace_policy=bindparam("b_grace_policy", type_=_SUB.c.grace_policy.type),
        ended_at=bindparam("b_ended_at"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_updated_at"),
    )
)


_LOCK = text(
    "UPDATE subscription AS t"
    " SET event_seq = t.event_seq + CASE WHEN t.status = 'active' THEN v.if_active ELSE v.otherwise END"
    " FROM unnest(CAST(:ids AS text[]), CAST(:if_active AS integer[]), CAST(:otherwise AS integer[]))"
    " AS v(id, if_active, otherwise)"
    " WHERE t.id = v.id AND t.lease_owner = :owner"
    " RETURNING t.id, t.status, t.default_payment_method_id, t.event_seq,"
    " CASE WHEN t.status = 'active' THEN v.if_active ELSE v.otherwise END"
)


async def _lock_for_outcome_postgres(
    session: Session, owner: str, events_if_active: Mapping[str, int], events_otherwise: Mapping[str, int]
) -> dict[str, LockedSubscription]:
    ids = list(events_if_active)
    conn = await session.connection()
    rows = await conn.execute(
        _LOCK,
        {
            "ids": array_literal(ids),
            "if_active": array_literal([events_if_active[i] for i in ids]),
            "otherwise": array_literal([events_otherwise.get(i, 0) for i in ids]),
            "owner": owner,
        },
    )
    return {
        sub_id: LockedSubscription(sub_id, status, default_method, last_seq - reserved + 1)
        for sub_id, status, default_method, last_seq, reserved in rows.all()
    }


_STATE_COLUMNS: tuple[Column, ...] = (
    ("id", "text"),
    ("status", "text"),
    ("renewal_status", "text"),
    ("period_index", "integer"),
    ("cycles_paid", "integer"),
    ("current_period_start", "timestamptz"),
    ("current_period_end", "timestamptz"),
    ("next_attempt_at", "timestamptz"),
    ("grace_started_at", "timestamptz"),
    ("grace_attempts", "integer"),
    ("grace_deadline", "timestamptz"),
    ("grace_retry_at", "timestamptz"),
    ("grace_policy", "text"),
    ("ended_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
_STATE_ASSIGNMENTS = (
    *(f"{name} = v.{name}" for name, _ in _STATE_COLUMNS[1:] if name != "grace_policy"),
    "grace_policy = CAST(v.grace_policy AS jsonb)",
    "lease_owner = NULL",
    "lease_until = NULL",
)


async def write_subscription_states(session: Session, updates: Sequence[SubscriptionUpdate]) -> None:
    """Store each subscription's new renewal state and release its lease (rows already locked)."""
    if not updates:
        return
    if is_postgres(session):
        rows = [
            (
                u.id,
                u.status,
                u.renewal_status,
                u.period_index,
                u.cycles_paid,
                u.current_period_start,
                u.current_period_end,
                u.next_attempt_at,
                u.grace_started_at,
                u.grace_attempts,
                u.grace_deadline,
                u.grace_retry_at,
                json_text(u.grace_policy),
                u.ended_at,
                u.updated_at,
            )
            for u in updates
        ]
        await update_rows(
            session, "subscription", _STATE_COLUMNS, rows, assignments=_STATE_ASSIGNMENTS, where="t.id = v.id"
        )
        return
    conn = await session.connection()
    params = [
        {
            "b_id": u.id,
            "b_status": u.status,
            "b_renewal_status": u.renewal_status,
            "b_period_index": u.period_index,
            "b_cycles_paid": u.cycles_paid,
            "b_current_period_start": u.current_period_start,
            "b_current_period_end": u.current_period_end,
            "b_next_attempt_at": u.next_attempt_at,
            "b_grace_started_at": u.grace_started_at,
            "b_grace_attempts": u.grace_attempts,
            "b_grace_deadline": u.grace_deadline,
            "b_grace_retry_at": u.grace_retry_at,
            "b_grace_policy": u.grace_policy,
            "b_ended_at": u.ended_at,
            "b_updated_at": u.updated_at,
        }
        for u in updates
    ]
    await conn.execute(_WRITE_STATE, params)


_RELEASE_ONLY = (
    update(_SUB)
    .where(_SUB.c.id == bindparam("b_id"))
    .values(lease_owner=None, lease_until=None, next_attempt_at=bindparam("b_next_attempt_at"))
)


async def release_with_next_attempt(session: Session, next_attempts: Mapping[str, datetime | None]) -> None:
    """Release leases and set when to look again, changing nothing else (locked rows only)."""
    if not next_attempts:
        return
    conn = await session.connection()
    await conn.execute(
        _RELEASE_ONLY, [{"b_id": sub_id, "b_next_attempt_at": at} for sub_id, at in next_attempts.items()]
    )


@dataclass(frozen=True, slots=True)
class OrphanedCharge:
    """An open renewal charge of a subscription the renewal pass no longer claims."""

    id: str
    idempotency_key: str
    method_index: int
    client_id: str
    subscription_id: str
    amount_minor: int
    currency: str
    period_start: datetime | None
    period_index: int | None
    attempt: int


_CHARGE = Charge.metadata.tables["charge"]


async def claim_orphaned_renewal_charges(
    session: Session,
    *,
    owner: str,
    real_now: datetime,
    lease_seconds: float,
    older_than: datetime,
    limit: int,
    charge_id: str | None = None,
    offsets: Mapping[str, int] | None = None,
) -> list[OrphanedCharge]:
    """Lease the subscriptions (no longer `active`) holding `pending`/`unknown` renewal charges
    last touched before `older_than` (or only `charge_id`), and return those charges.

    A subscription leased by a live worker is skipped: that worker records its charge itself.
    """
    lease_free = or_(_SUB.c.lease_until.is_(None), _SUB.c.lease_until < real_now)
    conn = await session.connection()
    rows = (
        await conn.execute(
            select(
                _CHARGE.c.id,
                _CHARGE.c.idempotency_key,
                _CHARGE.c.method_index,
                _CHARGE.c.client_id,
                _CHARGE.c.subscription_id,
                _CHARGE.c.amount_minor,
                _CHARGE.c.currency,
                _CHARGE.c.period_start,
                _CHARGE.c.period_index,
                _CHARGE.c.attempt,
            )
            .select_from(_CHARGE.join(_SUB, _SUB.c.id == _CHARGE.c.subscription_id))
            .where(
                _CHARGE.c.kind == "renewal",
                or_(_CHARGE.c.state == "pending", _CHARGE.c.state == "unknown"),
                touched_before(_CHARGE.c.updated_at, _CHARGE.c.client_id, older_than, offsets or {}),
                _SUB.c.status != "active",
                lease_free,
                *([] if charge_id is None else [_CHARGE.c.id == charge_id]),
            )
            .order_by(_CHARGE.c.updated_at)
            .limit(limit)
        )
    ).all()
    charges = [OrphanedCharge(**row._asdict()) for row in rows]
    if not charges:
        return []
    claimed = await conn.execute(
        update(_SUB)
        .where(
            _SUB.c.id.in_(sorted({c.subscription_id for c in charges})), _SUB.c.status != "active", lease_free
        )
        .values(lease_owner=owner, lease_until=real_now + timedelta(seconds=lease_seconds))
        .returning(_SUB.c.id)
    )
    ours = set(claimed.scalars().all())
    return [c for c in charges if c.subscription_id in ours]
