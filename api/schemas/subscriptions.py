"""Wire shapes of verify-card, subscriptions and payment history.

Schedule instants (`nextRenewalDate`, `currentPeriodStart`, `currentPeriodEnd`, `trialEndsAt`)
are written with the subscription's time-zone offset, so the local renewal date is readable as
sent (`2026-03-31T00:00:00-04:00`); bookkeeping timestamps are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from api.schemas.cards import CardInfoIn
from api.schemas.payment_methods import PaymentMethodOut, payment_method_out
from api.schemas.refunds import RefundOut, refund_out
from api.schemas.wire import Amount, CurrencyOut, Email, Flag, Line, OutModel, Text, WireModel
from billing.domain.errors import BillingError
from billing.domain.money import from_minor
from billing.services.enrolment import VerifyCardRequest
from billing.services.enrolment.settlement import Enrolment
from billing.services.refunds import ChargeView
from billing.services.subscriptions import SubscriptionView
from billing.store.models import Charge, Refund


class VerifyCardIn(WireModel):
    """`POST /v1/subscriptions/verify-card`. `uid` and `transactionUid` are the same field."""

    uid: Text | None = Field(None, description="The transaction from POST /transactions.")
    transaction_uid: Text | None = Field(None, description="Alias of uid.")
    processor: Text = Field(description="An installed processor slug: sandbox, stripe.")
    card_info: CardInfoIn
    should_create_subscription: Flag = Field(False, description="Enrol the cardholder in planUid.")
    plan_uid: Text | None = Field(None, description="Required with shouldCreateSubscription.")
    user_id: Line | None = Field(None, description="Defaults to the transaction's userId (must match it).")
    notification_email: Email | None = None
    alias: Text | None = Field(None, max_length=100, description="A name for the saved card.")
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")
    client: Text | None = Field(None, description="Alias of clientId.")

    def request(self) -> VerifyCardRequest:
        if self.uid is not None and self.transaction_uid is not None and self.uid != self.transaction_uid:
            raise BillingError(
                "CHECK_PARAMETERS", message="uid and transactionUid name different transactions.", field="uid"
            )
        trx_id = self.uid or self.transaction_uid
        if trx_id is None:
            raise BillingError(
                "CHECK_PARAMETERS", message="uid (or transactionUid) is required.", field="uid"
            )
        return VerifyCardRequest(
            transaction_id=trx_id,
            processor=self.processor,
            card=self.card_info.card(),
            create_subscription=self.should_create_subscription,
            plan_id=self.plan_uid,
            user_id=self.user_id,
            notification_email=self.notification_email,
            alias=self.alias,
        )


class UpdateSubscriptionIn(WireModel):
    """`PUT /v1/subscriptions`: the notification e-mail is the only editable field (null clears it)."""

    subscription_id: Text
    notification_email: Email | None
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")


class GraceOut(OutModel):
    """The running grace episode (renewalStatus in_grace)."""

    started_at: datetime | None
    attempts_made: int
    next_attempt_at: datetime | None
    deadline: datetime | None


class SubscriptionOut(OutModel):
    id: str
    client_id: str
    user_id: str
    plan_uid: str
    trx_uid: str | None
    currency: CurrencyOut
    notification_email: str | None
    status: Literal["active", "cancelled", "inactive", "expired"]
    renewal_status: Literal["current", "in_grace", "ended"]
    timezone: str = Field(description="The client's time zone at enrolment; renewal dates are local to it.")
    anchor_date: date
    next_renewal_date: datetime | None = Field(description="When the next charge is due; null once stopped.")
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_ends_at: datetime | None
    cycles_paid: int
    default_payment_method_id: str | None
    payment_method_ids: list[str] = Field(
        description="The cards behind this subscription: the default first, then the fallbacks in order."
    )
    fallback_cards: list[PaymentMethodOut] = Field(
        description="The cards tried, in this order, when the default fails; only cards attached to "
        "this subscription, never the cardholder's others."
    )
    grace: GraceOut | None
    cancelled_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChargeOut(OutModel):
    """One entry of the payment history."""

    id: str
    subscription_id: str | None
    kind: Literal["enrolment", "renewal", "on_demand"]
    state: Literal["pending", "succeeded", "failed", "unknown", "settled"]
    amount: Amount
    currency: CurrencyOut
    payment_method_id: str | None
    processor: str
    attempt: int
    period_start: datetime | None
    decline_code: str | None
    decline_message: str | None
    processor_reference: str | None
    metadata: dict[str, Any] | None
    expected_settlement_date: date | None
    settled_at: datetime | None
    refunded_amount: Amount = Field(description="What succeeded refunds gave back.")
    refundable_amount: Amount = Field(
        description="What may still be refunded (0 unless succeeded or settled)."
    )
    refunds: list[RefundOut] = Field(description="Refunds and voids of this charge, oldest first.")
    created_at: datetime
    updated_at: datetime


class EnrolmentOut(OutModel):
    """What verify-card did."""

    transaction_uid: str
    verified: Literal[True] = True
    payment_method: PaymentMethodOut
    subscription: SubscriptionOut | None
    charge: ChargeOut | None


def _local(instant: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if instant is None else instant.astimezone(zone)


def subscription_out(view: SubscriptionView) -> SubscriptionOut:
    sub = view.subscription
    zone = ZoneInfo(sub.timezone)
    grace = None
    if sub.renewal_status == "in_grace" or sub.grace_started_at is not None:
        grace = GraceOut(
            started_at=sub.grace_started_at,
            attempts_made=sub.grace_attempts,
            next_attempt_at=sub.grace_retry_at,
            deadline=sub.grace_deadline,
        )
    return SubscriptionOut(
        id=sub.id,
        client_id=sub.client_id,
        user_id=sub.user_id,
        plan_uid=sub.plan_id,
        trx_uid=sub.trx_id,
        currency=sub.currency,
        notification_email=sub.notification_email,
        status=sub.status,
        renewal_status=sub.renewal_status,
        timezone=sub.timezone,
        anchor_date=sub.anchor_date,
        next_renewal_date=_local(view.next_renewal_date, zone),
        current_period_start=_local(sub.current_period_start, zone),
        current_period_end=_local(sub.current_period_end, zone),
        trial_ends_at=_local(sub.trial_ends_at, zone),
        cycles_paid=sub.cycles_paid,
        default_payment_method_id=sub.default_payment_method_id,
        payment_method_ids=view.payment_method_ids,
        fallback_cards=[payment_method_out(card) for card in view.fallback_cards],
        grace=grace,
        cancelled_at=sub.cancelled_at,
        ended_at=sub.ended_at,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


def charge_out(charge: Charge, refunds: Sequence[Refund] = ()) -> ChargeOut:
    metadata = charge.charge_metadata if charge.kind == "on_demand" else None
    view = ChargeView(charge, list(refunds))
    return ChargeOut(
        id=charge.id,
        subscription_id=charge.subscription_id,
        kind=charge.kind,
        state=charge.state,
        amount=from_minor(charge.amount_minor, charge.currency),
        currency=charge.currency,
        payment_method_id=charge.payment_method_id,
        processor=charge.processor,
        attempt=charge.attempt,
        period_start=charge.period_start,
        decline_code=charge.decline_code,
        decline_message=charge.decline_message,
        processor_reference=charge.processor_reference,
        metadata=metadata,
        expected_settlement_date=charge.expected_settlement_date,
        settled_at=charge.settled_at,
        refunded_amount=from_minor(view.refunded_minor, charge.currency),
        refundable_amount=from_minor(view.refundable_minor, charge.currency),
        refunds=[refund_out(r) for r in view.refunds],
        created_at=charge.created_at,
        updated_at=charge.updated_at,
    )


def enrolment_out(enrolment: Enrolment, subscription: SubscriptionView | None) -> EnrolmentOut:
    return EnrolmentOut(
        transaction_uid=enrolment.transaction.id,
        payment_method=payment_method_out(enrolment.payment_method),
        subscription=subscription_out(subscription) if subscription is not None else None,
        charge=charge_out(enrolment.charge) if enrolment.charge is not None else None,
    )
