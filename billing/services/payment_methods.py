"""A cardholder's payment methods: add, remove, choose the default of a subscription.

A subscription is backed by the cards attached to it, not by every card of the cardholder: its
default first, then its fallbacks in order (docs/subscriptions.md, "Fallback cards").

- Enrolment attaches the verified card. A card added later backs no subscription unless the
  request names the subscriptions it is a fallback for (`fallbackFor`); it goes last on each.
- set-default attaches the card as the subscription's default. The card it replaces leaves the
  subscription unless the merchant keeps it (`keepAsFallback`), as the first fallback.
- A removed card leaves every subscription; one that was a default is replaced by that
  subscription's first fallback, and a card that is all an active subscription has cannot go.

`tokenizeData.cardId` is a token the processor already issued (for `sandbox`, a `tok_sbx_...`
token; for `stripe`, `cus_...:pm_...`); anything without that shape is refused, and so is
anything holding twelve digits in a row however they are separated. Raw card data may be sent as
`cardInfo` instead and is tokenized here; card numbers are never stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billing.domain.card_numbers import may_hold_card_number
from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.grace import Episode, GracePolicy, on_new_default_card
from billing.processors.base import CardInfo, PaymentProcessor
from billing.services.client_clock import client_now, load_client
from billing.services.enrolment import processor_named, tokenize
from billing.services.subscriptions import SubscriptionView, get_subscription, subscription_detail
from billing.store import payment_methods as store
from billing.store import subscriptions as subscription_store
from billing.store.engine import Session, SessionFactory, transaction
from billing.store.ids import new_id
from billing.store.models import PaymentMethod, Subscription

log = logging.getLogger("billing.payment_methods")


@dataclass(frozen=True)
class NewPaymentMethod:
    """`tokenizeData`: a processor token (`card_id`) or raw card data (`card`), exactly one."""

    user_id: str
    processor: str
    card_id: str | None = None
    card: CardInfo | None = None
    alias: str | None = None
    fallback_for: tuple[str, ...] = ()  # subscriptions of this cardholder the card backs, last


def _checked_token(processor: PaymentProcessor, card_id: str) -> str:
    """`card_id` when it has the shape of a token `processor` issues; 7204 otherwise.

    The messages never repeat the value: it may be a card number.
    """
    if may_hold_card_number(card_id):
        # Never store a card number: it belongs in cardInfo, which is tokenized and forgotten.
        raise BillingError(
            "INVALID_CARD_DATA",
            message="tokenizeData.cardId must be a processor token, not a card number; send cardInfo instead.",
            field="tokenizeData.cardId",
        )
    if not processor.is_token(card_id):
        raise BillingError(
            "INVALID_CARD_DATA",
            message=f"tokenizeData.cardId is not a token the {processor.slug} processor issues.",
            field="tokenizeData.cardId",
        )
    return card_id


async def add_payment_method(
    sessions: SessionFactory,
    clock: Clock,
    processors: Mapping[str, Any],
    *,
    client_id: str,
    request: NewPaymentMethod,
) -> PaymentMethod:
    """Save a card for a cardholder, and make it the last fallback of the subscriptions in
    `request.fallback_for` (none by default: a new card backs no subscription until asked).

    Raises 7005 for an unknown processor, 7000 unless exactly one of cardId / cardInfo is given,
    7204 for a cardId that is not the processor's token shape (card numbers included), and
    tokenize's errors (7204, 7202, declines) for cardInfo; for `fallbackFor`, 7041 (unknown
    subscription), 7000 (another cardholder's) and 7050 (not active), before anything is
    tokenized and again when the card is saved.
    """
    processor = processor_named(processors, request.processor, field="tokenizeData.processorId")
    if (request.card_id is None) == (request.card is None):
        raise BillingError(
            "CHECK_PARAMETERS",
            message="Send exactly one of tokenizeData.cardId (a processor token) and tokenizeData.cardInfo.",
            field="tokenizeData.cardId",
        )
    user_id = request.user_id.strip()
    if not user_id:
        raise BillingError(
            "CHECK_PARAMETERS", message="userId must not be empty.", field="tokenizeData.userId"
        )
    fallback_for = list(dict.fromkeys(request.fallback_for))
    if fallback_for:
        async with transaction(sessions) as session:
            await _subscriptions_to_back(session, client_id, user_id, fallback_for)
    method = PaymentMethod(
        id=new_id("payment_method"),
        client_id=client_id,
        user_id=user_id,
        processor=processor.slug,
        token="",
        alias=request.alias,
        status=store.ACTIVE,
        created_at=clock.now(),
    )
    if request.card is not None:
        token = await tokenize(
            processor, request.card, customer_ref=f"{client_id}:{user_id}", prefix="tokenizeData.cardInfo."
        )
        method.token = token.token
        method.brand, method.last4 = token.brand, token.last4
        method.exp_month, method.exp_year = token.exp_month, token.exp_year
    else:
        assert request.card_id is not None
        method.token = _checked_token(processor, request.card_id.strip())
    async with transaction(sessions) as session:
        await load_client(session, client_id)
        backed: list[Subscription] = []
        if fallback_for:
            # Checked again in the transaction that attaches the card (the first check ran before
            # the processor call); the lock keeps set-default and removals of this cardholder out.
            await store.lock_cardholder(session, client_id, user_id)
            backed = await _subscriptions_to_back(session, client_id, user_id, fallback_for)
        await store.add_payment_method(session, method)
        for subscription in backed:
            await store.attach_last(session, client_id, subscription.id, method.id)
    return method


async def _subscriptions_to_back(
    session: Session, client_id: str, user_id: str, subscription_ids: list[str]
) -> list[Subscription]:
    """The subscriptions a new card is to back: the client's, this cardholder's, active."""
    found: list[Subscription] = []
    for subscription_id in subscription_ids:
        subscription = await subscription_store.get_subscription(session, client_id, subscription_id)
        if subscription is None:
            raise BillingError("SUBSCRIPTION_NOT_FOUND", field="tokenizeData.fallbackFor")
        if subscription.user_id != user_id:
            raise BillingError(
                "CHECK_PARAMETERS",
                message="tokenizeData.fallbackFor names a subscription of another cardholder.",
                field="tokenizeData.fallbackFor",
            )
        if subscription.status != "active":
            raise BillingError(
                "STATE_CONFLICT",
                message=f"Subscription {subscription.id} is {subscription.status}; its cards can no longer change.",
                field="tokenizeData.fallbackFor",
            )
        found.append(subscription)
    return found


async def _method_of(session: Session, client_id: str, method_id: str, field: str) -> PaymentMethod:
    method = await store.get_payment_method(session, client_id, method_id)
    if method is None or method.status != store.ACTIVE:
        raise BillingError("CARD_NOT_FOUND", field=field)
    return method


async def remove_payment_method(
    session: Session, clock: Clock, *, client_id: str, method_id: str, user_id: str | None = None
) -> PaymentMethod:
    """Retire a card: it leaves every subscription it backed. An active subscription that
    defaulted to it moves to its own first fallback.

    Raises 7200 CARD_NOT_FOUND for an unknown, removed or other cardholder's card and 7051
    LAST_PAYMENT_METHOD when it is the only card behind an active subscription (set another
    default first: the cardholder's other cards do not back that subscription).
    """
    method = await _method_of(session, client_id, method_id, "paymentMethodId")
    if user_id is not None and user_id != method.user_id:
        raise BillingError("CARD_NOT_FOUND", field="paymentMethodId")
    # Serialise changes to this cardholder's cards, so two removals cannot each leave "the other one".
    await store.lock_cardholder(session, client_id, method.user_id)
    await session.refresh(method)  # as of the lock: a concurrent removal went first
    if method.status != store.ACTIVE:
        raise BillingError("CARD_NOT_FOUND", field="paymentMethodId")
    now = clock.now()
    for subscription in await subscription_store.active_subscriptions_of_user(
        session, client_id, method.user_id
    ):
        cards = [m.id for m in await store.cards_of_subscription(session, subscription)]
        if method.id not in cards:
            continue
        remaining = [card for card in cards if card != method.id]
        if not remaining:
            raise BillingError(
                "LAST_PAYMENT_METHOD",
                message=f"The card is the only one behind active subscription {subscription.id};"
                " set another default for it first.",
                field="paymentMethodId",
            )
        if subscription.default_payment_method_id == method.id:
            subscription.default_payment_method_id = remaining[0]
            subscription.updated_at = now
    method.status = store.REMOVED
    await store.detach_everywhere(session, client_id, method.id)
    await session.flush()
    return method


def _episode_of(subscription: Subscription) -> Episode | None:
    if subscription.grace_started_at is None or subscription.grace_policy is None:
        return None
    return Episode(
        started_at=subscription.grace_started_at,
        attempts_made=subscription.grace_attempts,
        policy=GracePolicy.from_snapshot(subscription.grace_policy),
        next_attempt_at=subscription.grace_retry_at,
    )


async def set_default_payment_method(
    session: Session,
    clock: Clock,
    *,
    client_id: str,
    subscription_id: str,
    method_id: str,
    keep_as_fallback: bool = False,
) -> SubscriptionView:
    """Make a card the subscription's default. The card it replaces stops backing the
    subscription, unless `keep_as_fallback`: then it is the first fallback. The subscription's
    other fallbacks keep their order.

    On a subscription in grace this asks the worker for an immediate retry (`next_attempt_at`
    = now) when the grace policy still allows one. That request only lands while the
    subscription is still in the grace episode read here: if a retry succeeded meanwhile, the
    next period stays due when it is due. Raises 7041, 7200 (unknown card or another
    cardholder's) and 7050 when the subscription is not active.
    """
    subscription = await get_subscription(session, client_id=client_id, subscription_id=subscription_id)
    method = await _method_of(session, client_id, method_id, "paymentMethodId")
    if method.user_id != subscription.user_id:
        raise BillingError(
            "CARD_NOT_FOUND", message="The card belongs to another cardholder.", field="paymentMethodId"
        )
    if subscription.status != "active":
        raise BillingError(
            "STATE_CONFLICT",
            message=f"The subscription is {subscription.status}; its cards can no longer change.",
            field="subscriptionId",
        )
    client = await load_client(session, client_id)
    now = local_now = client_now(clock, client)
    episode = _episode_of(subscription) if subscription.renewal_status == "in_grace" else None
    # One change to a cardholder's cards at a time: the card and the default it replaces are read
    # again under the lock (a removal or another set-default may have gone first).
    await store.lock_cardholder(session, client_id, subscription.user_id)
    await session.refresh(method)
    if method.status != store.ACTIVE:
        raise BillingError("CARD_NOT_FOUND", field="paymentMethodId")
    await session.refresh(subscription)
    replaced = subscription.default_payment_method_id
    if not await subscription_store.update_if_active(
        session, subscription, default_payment_method_id=method.id, updated_at=now
    ):
        raise BillingError("STATE_CONFLICT", field="subscriptionId")
    if episode is not None:
        decision = on_new_default_card(episode, local_now)
        # The worker owns the retry; this only makes the subscription due now. When the policy
        # allows no retry, the worker's deadline check ends the episode instead.
        retry: dict[str, Any] = {"next_attempt_at": local_now, "updated_at": now}
        if decision.status == "active":
            retry["grace_retry_at"] = local_now
        # Conditional on the episode read above: the worker may have retried (and succeeded)
        # since, and then "due now" would charge the next period at once.
        await subscription_store.request_grace_retry(
            session, subscription, grace_started_at=episode.started_at, **retry
        )
    order = [method.id]
    if keep_as_fallback and replaced is not None and replaced != method.id:
        order.append(replaced)
    order += [
        m
        for m in await store.attached_ids(session, client_id, subscription.id)
        if m not in (method.id, replaced)
    ]
    await store.set_attached(session, client_id, subscription.id, order)
    return await subscription_detail(session, client_id=client_id, subscription_id=subscription.id)
