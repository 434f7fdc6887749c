"""Finishing an enrolment: from a first-charge outcome to a subscription (or to nothing).

Both the verify-card request and the recovery pass end here. The charge leaves `pending` /
`unknown` through a conditional update, so whichever of them gets there first creates the
subscription and the other one sees that it is already done: exactly once.

Schedule semantics (shared with the renewal engine): boundary 0 is the anchor (the enrolment
date, or the trial-end date); without a trial the enrolment charge pays period 0 and the next
charge is due at boundary 1; with a trial nothing is charged until boundary 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from billing.domain.calendar import Schedule, due_at, enrolment_anchor
from billing.domain.errors import BillingError
from billing.domain.events import ChargeFailed, ChargeSucceeded, SubscriptionCreated
from billing.domain.settlement import DEFAULT_COUNTRY, expected_settlement_date
from billing.processors.base import Outcome
from billing.services.event_payloads import charge_event, subscription_event
from billing.services.plans import minimum_first_period, plan_schedule
from billing.store import charges as charge_store
from billing.store import events
from billing.store import payment_methods as method_store
from billing.store import subscriptions as subscription_store
from billing.store import transactions as trx_store
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Charge, PaymentMethod, Plan, Subscription, Transaction

log = logging.getLogger("billing.enrolment")


def first_charge_description(plan: Plan) -> str:
    """What the enrolment charge is called at the processor."""
    return f"{plan.name} (first period)"


@dataclass(frozen=True)
class EnrolmentContext:
    """Everything needed to create the subscription later, stored on the pending charge.

    `description` is the exact description the first charge was sent with, so that the charge
    can be sent again identically (processors refuse a key reused with other parameters).
    None only on charges written before it was recorded.
    """

    trx_id: str
    plan_id: str
    user_id: str
    payment_method_id: str
    notification_email: str | None
    timezone: str
    enrolled_on: date  # the client's local date at enrolment
    enrolled_at: datetime  # the client's "now" at enrolment
    description: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        return {
            "trxId": self.trx_id,
            "planId": self.plan_id,
            "userId": self.user_id,
            "paymentMethodId": self.payment_method_id,
            "notificationEmail": self.notification_email,
            "timezone": self.timezone,
            "enrolledOn": self.enrolled_on.isoformat(),
            "enrolledAt": self.enrolled_at.isoformat(),
            "description": self.description,
        }

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> EnrolmentContext:
        return cls(
            trx_id=str(data["trxId"]),
            plan_id=str(data["planId"]),
            user_id=str(data["userId"]),
            payment_method_id=str(data["paymentMethodId"]),
            notification_email=data.get("notificationEmail"),
            timezone=str(data["timezone"]),
            enrolled_on=date.fromisoformat(str(data["enrolledOn"])),
            enrolled_at=datetime.fromisoformat(str(data["enrolledAt"])),
            description=data.get("description"),
        )


@dataclass(frozen=True)
class Enrolment:
    """What verify-card did: the verified card and, when asked for, the subscription."""

    transaction: Transaction
    payment_method: PaymentMethod
    subscription: Subscription | None = None
    charge: Charge | None = None


def _schedule(plan: Plan, context: EnrolmentContext) -> Schedule:
    """The subscription's schedule: anchored by the enrolment instant, the trial and the minimum first period."""
    anchor = enrolment_anchor(
        lambda day: plan_schedule(plan, day, context.timezone),
        tz=context.timezone,
        enrolled_at=context.enrolled_at,
        trial_days=plan.trial_days,
        minimum_first_period=minimum_first_period(plan),
    )
    return plan_schedule(plan, anchor, context.timezone)


def first_period_start(plan: Plan, context: EnrolmentContext) -> datetime:
    """When what the enrolment charge pays for starts: period 0's midnight, or the enrolment
    instant when the first period was stretched to the following boundary."""
    return min(due_at(_schedule(plan, context), 0), context.enrolled_at)


def new_subscription(plan: Plan, context: EnrolmentContext, *, client_id: str, now: datetime) -> Subscription:
    """The subscription an enrolment creates, with its schedule in the client's time zone."""
    schedule = _schedule(plan, context)
    anchor = schedule.anchor
    due0 = due_at(schedule, 0)
    subscription = Subscription(
        id=new_id("subscription"),
        client_id=client_id,
        user_id=context.user_id,
        plan_id=plan.id,
        currency=plan.currency,
        trx_id=context.trx_id,
        notification_email=context.notification_email,
        default_payment_method_id=context.payment_method_id,
        status="active",
        renewal_status="current",
        timezone=context.timezone,
        anchor_date=anchor,
        created_at=now,
        updated_at=now,
    )
    if plan.trial_days > 0:
        # Nothing paid yet: period -1 is the trial, the first charge is due at boundary 0.
        subscription.period_index = -1
        subscription.cycles_paid = 0
        subscription.trial_ends_at = due0
        subscription.current_period_start = context.enrolled_at
        subscription.current_period_end = due0
        subscription.next_attempt_at = due0
    else:
        # The enrolment charge paid period 0; the next charge is due at boundary 1.
        due1 = due_at(schedule, 1)
        subscription.period_index = 0
        subscription.cycles_paid = 1
        subscription.current_period_start = min(due0, context.enrolled_at)
        subscription.current_period_end = due1
        subscription.next_attempt_at = due1
    return subscription


async def record_created(session: Session, subscription: Subscription, *, now: datetime) -> None:
    """Store a new subscription with its `subscription.created` event; the verified card, its
    default, is the one card attached to it (fallbacks are added by the merchant)."""
    await subscription_store.add_subscription(session, subscription)
    if subscription.default_payment_method_id is not None:
        await method_store.attach_first_card(
            session, subscription.client_id, subscription.id, subscription.default_payment_method_id
        )
    await events.record_event(
        session,
        client_id=subscription.client_id,
        payload=subscription_event(SubscriptionCreated, subscription),
        now=now,
        subscription_id=subscription.id,
    )


async def settle_enrolment(
    session: Session,
    charge: Charge,
    outcome: Outcome,
    *,
    now: datetime,
    settlement_country: str = DEFAULT_COUNTRY,
) -> Enrolment | None:
    """Apply a definite outcome (`succeeded` or `failed`) to an open enrolment charge.

    The one place an enrolment charge's outcome lands, whoever learned it: the verify-card
    request, the recovery pass or a processor notification (`billing.services.inbound`).

    Returns what the enrolment produced, or None when the charge had already been settled by
    someone else (nothing is written then). `charge` must belong to `session`.
    """
    if outcome.status == "unknown":
        raise ValueError("settle_enrolment needs a definite outcome")
    if charge.charge_metadata is None:
        raise ValueError(f"enrolment charge {charge.id} carries no enrolment context")
    context = EnrolmentContext.from_metadata(charge.charge_metadata)
    trx = await trx_store.get_transaction(session, charge.client_id, context.trx_id)
    method = await method_store.get_payment_method(session, charge.client_id, context.payment_method_id)
    if trx is None or method is None:
        raise ValueError(f"enrolment charge {charge.id} names a transaction or card that does not exist")
    if outcome.status == "succeeded":
        return await _succeeded(
            session, charge, outcome, context, trx, method, now=now, country=settlement_country
        )
    return await _failed(session, charge, outcome, trx, method, now=now)


async def _succeeded(
    session: Session,
    charge: Charge,
    outcome: Outcome,
    context: EnrolmentContext,
    trx: Transaction,
    method: PaymentMethod,
    *,
    now: datetime,
    country: str,
) -> Enrolment | None:
    plan = await session.get(Plan, context.plan_id)
    if plan is None:
        raise ValueError(f"enrolment charge {charge.id} names a plan that does not exist")
    settled = await charge_store.finish_charge(
        session,
        charge,
        from_states=charge_store.OPEN_STATES,
        state="succeeded",
        processor_reference=outcome.reference,
        expected_settlement_date=expected_settlement_date(now, country),
        updated_at=now,
    )
    if not settled:
        return None  # another request or worker settled it first
    subscription = new_subscription(plan, context, client_id=charge.client_id, now=now)
    await record_created(session, subscription, now=now)
    charge.subscription_id = subscription.id
    await session.flush()
    if not await trx_store.move_transaction(session, trx, from_status="enrolling", to_status="used"):
        # The money moved, so the subscription stands; the transaction was consumed elsewhere.
        log.warning("enrolment charge settled on a transaction not enrolling", extra={"charge_id": charge.id})
    await events.record_event(
        session,
        client_id=subscription.client_id,
        payload=charge_event(ChargeSucceeded, charge),
        now=now,
        subscription_id=subscription.id,
    )
    log.info("enrolment succeeded", extra={"charge_id": charge.id, "subscription_id": subscription.id})
    return Enrolment(transaction=trx, payment_method=method, subscription=subscription, charge=charge)


async def _failed(
    session: Session,
    charge: Charge,
    outcome: Outcome,
    trx: Transaction,
    method: PaymentMethod,
    *,
    now: datetime,
) -> Enrolment | None:
    settled = await charge_store.finish_charge(
        session,
        charge,
        from_states=charge_store.OPEN_STATES,
        state="failed",
        decline_code=outcome.decline_code,
        decline_message=outcome.decline_message,
        hard_decline=outcome.hard_decline,
        processor_reference=outcome.reference,
        updated_at=now,
    )
    if not settled:
        return None
    # A declined enrolment leaves nothing usable behind: the card is retired and the
    # transaction can be tried again with another card.
    method.status = method_store.REMOVED
    await trx_store.move_transaction(session, trx, from_status="enrolling", to_status="created")
    await events.record_event(
        session,
        client_id=charge.client_id,
        payload=charge_event(ChargeFailed, charge, trx_uid=trx.id, user_id=trx.user_id),
        now=now,
    )
    log.info("enrolment declined", extra={"charge_id": charge.id, "code": outcome.decline_code})
    return Enrolment(transaction=trx, payment_method=method, charge=charge)


def decline_error(outcome: Outcome) -> BillingError:
    """The error a declined outcome answers with (its catalog code, e.g. 7303 -> 402)."""
    return BillingError.of_code(outcome.decline_code or "7201", message=outcome.decline_message)
