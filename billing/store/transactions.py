"""Originating transactions (the Payment Link style transaction an enrolment is verified against).

`status` moves `created -> enrolling -> used` (or back to `created` when an enrolment charge is
declined). Every move is a conditional update, so two requests racing on one transaction can
never both win.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billing.domain.errors import BillingError
from billing.store.engine import Session
from billing.store.models import Transaction
from billing.store.owned import owned_row


async def add_transaction(session: Session, trx: Transaction) -> Transaction:
    """Insert `trx`; a second `externalId` for the same client raises 7006 EXTERNAL_ID_ALREADY_EXISTS."""
    try:
        async with session.begin_nested():
            session.add(trx)
    except IntegrityError as exc:
        raise BillingError("EXTERNAL_ID_ALREADY_EXISTS", field="externalId") from exc
    return trx


async def external_id_taken(session: Session, client_id: str, external_id: str) -> bool:
    """True when the client already has a transaction with this `externalId`."""
    query = (
        select(Transaction.id)
        .where(Transaction.client_id == client_id)
        .where(Transaction.external_id == external_id)
        .limit(1)
    )
    return (await session.exec(query)).first() is not None


async def get_transaction(session: Session, client_id: str, trx_id: str) -> Transaction | None:
    """The client's transaction with this id; another client's is None, like a missing one."""
    return await owned_row(session, Transaction, client_id, trx_id)


async def move_transaction(session: Session, trx: Transaction, *, from_status: str, to_status: str) -> bool:
    """Set `trx.status` to `to_status` only if it is still `from_status`; False if someone else moved it.

    The loaded object is refreshed either way, so the caller sees the status that won.
    """
    result = await session.exec(
        update(Transaction)
        .where(col(Transaction.client_id) == trx.client_id)
        .where(col(Transaction.id) == trx.id)
        .where(col(Transaction.status) == from_status)
        .values(status=to_status)
    )
    await session.refresh(trx)
    return bool(result.rowcount == 1)
