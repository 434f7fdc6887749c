"""Refund rows and the amount they hold on their charge.

A refund first reserves its amount on the charge with one conditional UPDATE
(`refund_reserved_minor + amount <= amount_minor`, on a charge that succeeded or settled): the
row lock on PostgreSQL and the single writer on SQLite order concurrent refunds, and the CHECK on
the column backs it up, so the sum can never pass the captured amount, whatever interleaves.
The `pending` refund row is inserted in the same transaction. Outcomes are written with a
conditional UPDATE that only leaves `pending`/`unknown`, so a late writer never overwrites a
final state, and a failed refund gives its amount back in that same transaction (exactly once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billing.store.client_time import touched_before
from billing.store.engine import Session
from billing.store.models import Charge, Refund

OPEN_STATES = ("pending", "unknown")
REFUNDABLE_CHARGE_STATES = ("succeeded", "settled")


async def reserve(session: Session, charge: Charge, amount_minor: int, *, at: datetime) -> bool:
    """Hold `amount_minor` of `charge` for a refund; False when less than that remains refundable
    (or the charge is no longer refundable). `charge` is refreshed either way."""
    result = await session.exec(
        update(Charge)
        .where(col(Charge.id) == charge.id, col(Charge.client_id) == charge.client_id)
        .where(col(Charge.state).in_(REFUNDABLE_CHARGE_STATES))
        .where(col(Charge.refund_reserved_minor) + amount_minor <= col(Charge.amount_minor))
        .values(refund_reserved_minor=col(Charge.refund_reserved_minor) + amount_minor, updated_at=at)
    )
    await session.refresh(charge)
    return bool(result.rowcount == 1)


async def add_pending(session: Session, refund: Refund) -> bool:
    """Insert the `pending` row; False (nothing written) when its request key is already taken."""
    try:
        async with session.begin_nested():
            session.add(refund)
    except IntegrityError:
        return False
    return True


async def finish(session: Session, refund: Refund, *, at: datetime, **values: object) -> bool:
    """Move `refund` out of `pending`/`unknown`, setting `values`; False if it had already moved.

    A refund that becomes `failed` gives its amount back to the charge in the same transaction.
    The object is refreshed either way.
    """
    result = await session.exec(
        update(Refund)
        .where(col(Refund.client_id) == refund.client_id, col(Refund.id) == refund.id)
        .where(col(Refund.state).in_(OPEN_STATES))
        .values(updated_at=at, **values)
    )
    moved = bool(result.rowcount == 1)
    if moved and values.get("state") == "failed":
        await session.exec(
            update(Charge)
            .where(col(Charge.id) == refund.charge_id)
            .values(refund_reserved_minor=col(Charge.refund_reserved_minor) - refund.amount_minor)
        )
    await session.refresh(refund)
    return moved


async def get_refund(session: Session, client_id: str, refund_id: str) -> Refund | None:
    """One refund of a client (None for another client's)."""
    return await session.get(Refund, (client_id, refund_id))


async def by_request_key(session: Session, client_id: str, request_key: str) -> Refund | None:
    """The refund a merchant request with this Idempotency-Key created, if any."""
    query = select(Refund).where(Refund.client_id == client_id, Refund.request_key == request_key)
    return (await session.exec(query)).first()


async def refunds_of_charges(session: Session, charge_ids: Sequence[str]) -> dict[str, list[Refund]]:
    """The refunds of each charge, oldest first (charges without refunds map to [])."""
    found: dict[str, list[Refund]] = {charge_id: [] for charge_id in charge_ids}
    if not charge_ids:
        return found
    query = (
        select(Refund)
        .where(col(Refund.charge_id).in_(list(charge_ids)))
        .order_by(col(Refund.created_at), col(Refund.id))
    )
    for refund in (await session.exec(query)).all():
        found[refund.charge_id].append(refund)
    return found


async def claim_open_refund(session: Session, refund: Refund, *, now: datetime) -> bool:
    """Take a stale open refund for one reconciliation (one conditional UPDATE of `updated_at`).

    Touching `updated_at` keeps it out of every other worker's stale window for as long as that
    window lasts, like a lease; False when another worker (or its request) touched it first.
    """
    table = Refund.metadata.tables["refund"]
    conn = await session.connection()
    result = await conn.execute(
        update(table)
        .where(table.c.id == refund.id, table.c.client_id == refund.client_id)
        .where(table.c.state.in_(OPEN_STATES), table.c.updated_at == refund.updated_at)
        .values(updated_at=now)
    )
    return bool(result.rowcount == 1)


async def stale_open_refunds(
    session: Session, *, before: datetime, limit: int, offsets: Mapping[str, int]
) -> Sequence[Refund]:
    """Refunds still `pending` or `unknown` that were last touched before `before` (real time;
    `offsets`: clients whose clock runs ahead, see `client_time`)."""
    query = (
        select(Refund)
        .where(col(Refund.state).in_(OPEN_STATES))
        .where(touched_before(col(Refund.updated_at), col(Refund.client_id), before, offsets))
        .order_by(col(Refund.updated_at), col(Refund.id))
        .limit(limit)
    )
    return (await session.exec(query)).all()
