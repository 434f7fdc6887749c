"""Charges as the merchant API and the enrolment flow write and read them.

A charge is written `pending` and committed before the processor is called; it is finished
(`succeeded` / `failed` / `unknown`) by a conditional update from the states it may leave, so
the request that made it and a recovery pass can never both finish it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billing.store.engine import Session
from billing.store.models import Charge

OPEN_STATES = ("pending", "unknown")


def enrolment_key(trx_id: str, attempt: int) -> str:
    """Idempotency key of the n-th enrolment charge of a transaction."""
    return f"enrol:{trx_id}:{attempt}"


async def add_charge(session: Session, charge: Charge) -> bool:
    """Insert `charge`; False (and nothing written) when its idempotency key is already taken."""
    try:
        async with session.begin_nested():
            session.add(charge)
    except IntegrityError:
        return False
    return True


async def enrolment_attempts(session: Session, trx_id: str) -> int:
    """How many enrolment charges were ever written for a transaction."""
    prefix = enrolment_key(trx_id, 0)[:-1]
    query = (
        select(func.count())
        .select_from(Charge)
        .where(Charge.kind == "enrolment")
        .where(col(Charge.idempotency_key).startswith(prefix, autoescape=True))
    )
    return int((await session.exec(query)).one())


async def finish_charge(
    session: Session, charge: Charge, *, from_states: Sequence[str], **values: Any
) -> bool:
    """Move `charge` out of one of `from_states`, setting `values`; False if it had already moved.

    The object is refreshed either way.
    """
    result = await session.exec(
        update(Charge)
        .where(col(Charge.id) == charge.id)
        .where(col(Charge.state).in_(list(from_states)))
        .values(**values)
    )
    await session.refresh(charge)
    return bool(result.rowcount == 1)


async def stale_enrolment_charges(session: Session, *, before: datetime, limit: int) -> Sequence[Charge]:
    """Enrolment charges still `pending` or `unknown` that were last touched before `before`."""
    query = (
        select(Charge)
        .where(Charge.kind == "enrolment")
        .where(col(Charge.state).in_(OPEN_STATES))
        .where(col(Charge.updated_at) < before)
        .order_by(col(Charge.updated_at), col(Charge.id))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def charges_of_subscription(session: Session, subscription_id: str) -> Sequence[Charge]:
    """A subscription's charges, newest first (its payment history)."""
    query = (
        select(Charge)
        .where(Charge.subscription_id == subscription_id)
        .order_by(col(Charge.created_at).desc(), col(Charge.id).desc())
    )
    return (await session.exec(query)).all()
