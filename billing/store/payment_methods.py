"""Payment methods (processor tokens) of a client's cardholders, and the cards behind each subscription.

A subscription is backed by the cards attached to it (`subscription_payment_method`, in
`position` order): its default is charged first, then its other attached cards, its fallbacks.
Another card of the same cardholder is never charged for it. Removed cards leave every list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, bindparam, delete, func, insert, literal, union_all, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from billing.domain.card_numbers import may_hold_card_number
from billing.store.engine import Session
from billing.store.models import PaymentMethod, Subscription, SubscriptionPaymentMethod
from billing.store.owned import owned_row

_METHOD = PaymentMethod.metadata.tables["payment_method"]
_ATTACHED = PaymentMethod.metadata.tables["subscription_payment_method"]
_SUB = PaymentMethod.metadata.tables["subscription"]
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
    """Insert `method` as the cardholder's newest card (attached to no subscription).

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
    """The cardholder's active methods, in the order they were added."""
    query = (
        select(PaymentMethod)
        .where(PaymentMethod.client_id == client_id)
        .where(PaymentMethod.user_id == user_id)
        .where(PaymentMethod.status == ACTIVE)
        .order_by(col(PaymentMethod.priority), col(PaymentMethod.created_at), col(PaymentMethod.id))
    )
    return (await session.exec(query)).all()


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
class SubscriptionMethod:
    """An active card behind a subscription, as a charge needs it."""

    id: str
    client_id: str
    user_id: str
    processor: str
    token: str


async def attached_ids(session: Session, client_id: str, subscription_id: str) -> list[str]:
    """The ids of the cards attached to the subscription, by position (any status)."""
    query = (
        sa_select(_ATTACHED.c.payment_method_id)
        .where(_ATTACHED.c.client_id == client_id, _ATTACHED.c.subscription_id == subscription_id)
        .order_by(_ATTACHED.c.position, _ATTACHED.c.payment_method_id)
    )
    return list((await session.exec(query)).scalars().all())  # type: ignore[call-overload]


async def _insert_attached(
    session: Session, client_id: str, subscription_id: str, method_ids: Sequence[str], *, first: int = 0
) -> None:
    """Attach `method_ids` to the subscription at positions `first`, `first` + 1, ..."""
    if not method_ids:
        return
    await session.exec(
        insert(_ATTACHED),
        params=[
            {
                "client_id": client_id,
                "subscription_id": subscription_id,
                "payment_method_id": method_id,
                "position": position,
            }
            for position, method_id in enumerate(method_ids, start=first)
        ],
    )


async def set_attached(
    session: Session, client_id: str, subscription_id: str, method_ids: Sequence[str]
) -> None:
    """Make `method_ids` (in this order, no repeats) the cards attached to the subscription."""
    await session.exec(
        delete(_ATTACHED).where(
            _ATTACHED.c.client_id == client_id, _ATTACHED.c.subscription_id == subscription_id
        )
    )
    await _insert_attached(session, client_id, subscription_id, method_ids)


async def attach_first_card(session: Session, client_id: str, subscription_id: str, method_id: str) -> None:
    """Attach the first card of a subscription that has none yet (its enrolment card)."""
    await _insert_attached(session, client_id, subscription_id, [method_id])


async def attach_last(session: Session, client_id: str, subscription_id: str, method_id: str) -> None:
    """Attach a card to the subscription behind its other cards (no change if it is attached)."""
    query = sa_select(_ATTACHED.c.payment_method_id, _ATTACHED.c.position).where(
        _ATTACHED.c.client_id == client_id, _ATTACHED.c.subscription_id == subscription_id
    )
    rows = (await session.exec(query)).all()  # type: ignore[call-overload]
    if any(row[0] == method_id for row in rows):
        return
    # Behind the last position, not at the count: a detached card leaves a gap, and two cards at
    # one position would be ordered by id, not by when they were attached.
    last = max((row[1] for row in rows), default=-1)
    await _insert_attached(session, client_id, subscription_id, [method_id], first=last + 1)


async def detach_everywhere(session: Session, client_id: str, method_id: str) -> None:
    """Take a card off every subscription it is attached to."""
    await session.exec(
        delete(_ATTACHED).where(
            _ATTACHED.c.client_id == client_id, _ATTACHED.c.payment_method_id == method_id
        )
    )


# Built once: every subscription read runs it. The cards are picked by key (the default's id and
# the ids attached to the subscription), never by scanning the client's cards: a filter of "the
# default or attached" over the join made PostgreSQL read every card of the client (4 ms a read
# at 10,000 cards, growing with the merchant).
_CARDS_OF_SUBSCRIPTION = (
    select(PaymentMethod)
    .join(
        SubscriptionPaymentMethod,
        (col(SubscriptionPaymentMethod.payment_method_id) == col(PaymentMethod.id))
        & (col(SubscriptionPaymentMethod.client_id) == col(PaymentMethod.client_id))
        & (col(SubscriptionPaymentMethod.subscription_id) == bindparam("subscription_id")),
        isouter=True,
    )
    .where(col(PaymentMethod.client_id) == bindparam("client_id"))
    .where(col(PaymentMethod.status) == ACTIVE)
    .where(
        col(PaymentMethod.id).in_(
            union_all(
                sa_select(bindparam("default_id", type_=String)),
                sa_select(_ATTACHED.c.payment_method_id).where(
                    _ATTACHED.c.client_id == bindparam("client_id"),
                    _ATTACHED.c.subscription_id == bindparam("subscription_id"),
                ),
            )
        )
    )
    .order_by(col(SubscriptionPaymentMethod.position), col(PaymentMethod.id))
)


async def cards_of_subscription(session: Session, subscription: Subscription) -> list[PaymentMethod]:
    """The active cards a charge for `subscription` tries, in order: its default, then its fallbacks."""
    params = {
        "subscription_id": subscription.id,
        "client_id": subscription.client_id,
        "default_id": subscription.default_payment_method_id,
    }
    methods = list((await session.exec(_CARDS_OF_SUBSCRIPTION, params=params)).all())
    methods.sort(key=lambda m: m.id != subscription.default_payment_method_id)  # stable: default first
    return methods


async def methods_of_subscriptions(
    session: Session, subscriptions: Sequence[tuple[str, str]]
) -> dict[str, list[SubscriptionMethod]]:
    """The active cards behind each (client_id, subscription_id): its default first, then the cards
    attached to it by position. Two statements per chunk of subscriptions.

    Each statement reads one table by key: which cards back which subscription (the default and
    the attachments), then those cards. A join of subscriptions and cards in one statement left the
    join order to the planner, which, on tables keyed by `(id, client_id)` and not yet analysed,
    could rescan a client's subscriptions once per card.
    """
    conn = await session.connection()
    found: dict[str, list[SubscriptionMethod]] = {sub_id: [] for _, sub_id in subscriptions}
    wanted = sorted(set(subscriptions))
    columns = (_METHOD.c.id, _METHOD.c.client_id, _METHOD.c.user_id, _METHOD.c.processor, _METHOD.c.token)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        clients = sorted({client for client, _ in chunk})
        ids = [sub_id for _, sub_id in chunk]
        defaults = sa_select(
            _SUB.c.id.label("subscription_id"),
            literal(-1).label("position"),
            _SUB.c.default_payment_method_id.label("payment_method_id"),
        ).where(
            _SUB.c.client_id.in_(clients), _SUB.c.id.in_(ids), _SUB.c.default_payment_method_id.is_not(None)
        )
        attached = sa_select(
            _ATTACHED.c.subscription_id, _ATTACHED.c.position, _ATTACHED.c.payment_method_id
        ).where(_ATTACHED.c.client_id.in_(clients), _ATTACHED.c.subscription_id.in_(ids))
        backing = sorted((await conn.execute(union_all(defaults, attached))).all())
        card_ids = sorted({card_id for _, _, card_id in backing})
        if not card_ids:
            continue
        cards = {
            row.id: SubscriptionMethod(**row._asdict())
            for row in await conn.execute(
                sa_select(*columns).where(
                    _METHOD.c.client_id.in_(clients), _METHOD.c.id.in_(card_ids), _METHOD.c.status == ACTIVE
                )
            )
        }
        for sub_id, _position, card_id in backing:
            card = cards.get(card_id)
            if card is not None and card not in found[sub_id]:
                found[sub_id].append(card)
    return found
