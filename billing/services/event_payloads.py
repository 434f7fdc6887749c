"""Event payload models (`billing.domain.events`) filled from stored subscriptions and charges."""

from __future__ import annotations

from typing import Any, TypeVar

from billing.domain.events import ChargeSnapshot, SubscriptionSnapshot
from billing.domain.money import from_minor
from billing.store.models import Charge, Subscription

S = TypeVar("S", bound=SubscriptionSnapshot)
C = TypeVar("C", bound=ChargeSnapshot)


def subscription_event(model: type[S], subscription: Subscription) -> S:
    """A `subscription.*` payload: the subscription as it is now."""
    return model(
        subscription_id=subscription.id,
        client_id=subscription.client_id,
        user_id=subscription.user_id,
        plan_uid=subscription.plan_id,
        trx_uid=subscription.trx_id,
        currency=subscription.currency,
        status=subscription.status,
        renewal_status=subscription.renewal_status,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        trial_ends_at=subscription.trial_ends_at,
        cycles_paid=subscription.cycles_paid,
        default_payment_method_id=subscription.default_payment_method_id,
        cancelled_at=subscription.cancelled_at,
    )


def charge_event(model: type[C], charge: Charge, **context: Any) -> C:
    """A `charge.*` payload for a stored charge; `context` sets optional fields (trxUid, userId)."""
    if charge.expected_settlement_date is not None:
        context.setdefault("expected_settlement_date", charge.expected_settlement_date)
    return model(
        charge_id=charge.id,
        subscription_id=charge.subscription_id,
        kind=charge.kind,
        state=charge.state,
        amount=str(from_minor(charge.amount_minor, charge.currency)),
        amount_minor=charge.amount_minor,
        currency=charge.currency,
        payment_method_id=charge.payment_method_id,
        processor=charge.processor,
        attempt=charge.attempt,
        period_start=charge.period_start,
        decline_code=charge.decline_code,
        decline_message=charge.decline_message,
        processor_reference=charge.processor_reference,
        **context,
    )
