"""Payment methods (processor tokens) of a client's cardholders, and their fallback order.

A cardholder's active methods are the payment methods of every subscription they hold: the
subscription's default first, then the others by `priority` (lower first, then oldest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from billing.domain.card_numbers import may_hold_card_number
from billing.store.engine import Session
from billing.store.models import PaymentMethod, Subscription
from billing.store.owned import owned_row

_METHOD = PaymentMethod.metadata.tables["payment_method"]
_CHUNK = 1000
ACTIVE = "active"
REMOVED = "removed"


async def next_priority(session: Session, client_id: str, user_id: str) -> int:
    """The priority that puts a new method after every method the cardholder already has."""
    query = (
        select(func.max(PaymentMethod.priority))
        .where(PaymentMethod.client_id == client_id)
        .where(PaymentMethod.user_id == user_id)
    )
    highest = (await session.exec(query)).one()
    return 0 if highest is None else int(highest) + 1


async def add_payment_method(session: Session, method: PaymentMethod) -> PaymentMethod:
    """Insert `method` as the cardholder's last fallback.

    Raises ValueError, writing nothing, for a token that may hold a card number: callers refuse
    such tokens with 7204 first, so this only stops a slip from ever reaching the disk.
    """
    if may_hold_card_number(method.token):
        raise ValueError("refusing to store a payment-method token that may hold a card number")
    method.priority = await next_priority(session, method.client_id, method.user_id)
    session.add(method)
    await session.flush()
    return method


async def get_payment_method(session: Session, client_id: str, method_id: str) -> PaymentMethod | None:
    """The client's payment method with this id (any status); another client's is None."""
    return await owned_row(session, PaymentMethod, client_id, method_id)


async def active_methods(session: Session, client_id: str, user_id: str) -> Sequence[PaymentMethod]:
    """The cardholder's active methods in fallback order."""
    query = (
        select(PaymentMethod)
        .where(PaymentMethod.client_id == client_id)
        .where(PaymentMethod.user_id == user_id)
        .where(PaymentMethod.status == ACTIVE)
        .order_by(col(PaymentMethod.priority), col(PaymentMethod.created_at), col(PaymentMethod.id))
    )
    return (await session.exec(query)).all()


async def methods_for_subscription(session: Session, subscription: Subscription) -> list[PaymentMethod]:
    """The methods a charge for `subscription` tries, in order: its default, then the fallbacks."""
    methods = list(await active_methods(session, subscription.client_id, subscription.user_id))
    methods.sort(key=lambda m: m.id != subscription.default_payment_method_id)  # stable: default first
    return methods


async def put_first(session: Session, method: PaymentMethod) -> None:
    """Make `method` the cardholder's first fallback, keeping the others in their current order."""
    others = [m for m in await active_methods(session, method.client_id, method.user_id) if m.id != method.id]
    method.priority = 0
    for position, other in enumerate(others, start=1):
        other.priority = position
    await session.flush()


async def lock_cardholder(session: Session, client_id: str, user_id: str) -> None:
    """Take the write lock on the cardholder's methods until the transaction ends.

    A no-op UPDATE: row locks on PostgreSQL, the database write lock on SQLite. Either way a
    second transaction changing the same cardholder's cards waits for this one.
    """
    await session.exec(
        update(PaymentMethod)
        .where(col(PaymentMethod.client_id) == client_id)
        .where(col(PaymentMethod.user_id) == user_id)
        .values(priority=PaymentMethod.priority)
    )


@dataclass(frozen=True, slots=True)
class CardholderMethod:
    """An active payment method of a cardholder, in fallback order."""

    id: str
    client_id: str
    user_id: str
    processor: str
    token: str


async def methods_of_cardholders(
    session: Session, cardholders: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[CardholderMethod]]:
    """Active methods of each (client_id, user_id), by priority, then age (the fallback order)."""
    conn = await session.connection()
    wanted = set(cardholders)
    found: dict[tuple[str, str], list[CardholderMethod]] = {pair: [] for pair in wanted}
    clients = sorted({client for client, _ in wanted})
    users = sorted({user for _, user in wanted})
    for start in range(0, len(users), _CHUNK):
        rows = await conn.execute(
            sa_select(
                _METHOD.c.id, _METHOD.c.client_id, _METHOD.c.user_id, _METHOD.c.processor, _METHOD.c.token
            )
            .where(
                _METHOD.c.status == "active",
                _METHOD.c.client_id.in_(clients),
                _METHOD.c.user_id.in_(users[start : start + _CHUNK]),
            )
            .order_by(_METHOD.c.priority, _METHOD.c.created_at, _METHOD.c.id)
        )
        for row in rows.all():
            method = CardholderMethod(**row._asdict())
            pair = (method.client_id, method.user_id)
            if pair in found:
                found[pair].append(method)
    return found
