"""Payment links: finding a transaction by its reference, its decline counter, and the per-IP
attempt log (`payment_link_attempt`) that limits card submissions across API processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select

from billing.store.engine import Session
from billing.store.models import Client, PaymentLinkAttempt, Plan, Transaction


async def transaction_by_reference(session: Session, reference: str) -> Transaction | None:
    """The transaction whose link is `/pay/{reference}`.

    References are drawn at random and a new one is redrawn while it is taken, so there is one;
    should two ever exist, the newest wins (the link a merchant just sent).
    """
    query = (
        select(Transaction)
        .where(Transaction.reference == reference)
        .order_by(col(Transaction.created_at).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def reference_taken(session: Session, reference: str) -> bool:
    query = select(Transaction.id).where(Transaction.reference == reference).limit(1)
    return (await session.exec(query)).first() is not None


async def link_parts(session: Session, trx: Transaction) -> tuple[Client | None, Plan | None]:
    """The client behind a link and the plan it enrols in (None when it only saves the card)."""
    client = await session.get(Client, trx.client_id)
    plan = None
    if trx.plan_id is not None:
        plan = (
            await session.exec(
                select(Plan).where(Plan.client_id == trx.client_id).where(Plan.id == trx.plan_id)
            )
        ).first()
    return client, plan


async def add_decline(session: Session, trx: Transaction) -> int:
    """Count one declined card on the link (an atomic increment); the count after it."""
    await session.exec(
        update(Transaction)
        .where(col(Transaction.client_id) == trx.client_id)
        .where(col(Transaction.id) == trx.id)
        .values(link_declines=Transaction.link_declines + 1)
    )
    await session.refresh(trx)
    return trx.link_declines


async def attempts_since(session: Session, ip_key: str, since: datetime) -> int:
    """Cards submitted from one address (any link) since `since`."""
    query = (
        select(func.count())
        .select_from(PaymentLinkAttempt)
        .where(PaymentLinkAttempt.ip_key == ip_key)
        .where(col(PaymentLinkAttempt.attempted_at) >= since)
    )
    return int((await session.exec(query)).one())


async def record_attempt(session: Session, attempt: PaymentLinkAttempt, *, forget_before: datetime) -> None:
    """Log one submission and drop the rows no limit looks at any more (older than the window)."""
    await session.exec(delete(PaymentLinkAttempt).where(col(PaymentLinkAttempt.attempted_at) < forget_before))
    session.add(attempt)
