"""verify-card: tokenize, pre-authorize the transaction amount, void, save the card and, when
asked to, enrol the cardholder in a plan.

The first charge is crash-safe. Before the processor is asked for money, one database
transaction saves the card, writes the `pending` enrolment charge (key `enrol:{trx}:{attempt}`,
carrying everything needed to create the subscription and to send the charge again identically)
and marks the transaction `enrolling`; then the charge is sent through the shared charge machine
(`billing.services.charging.call_processor`). A definite answer is settled at once (see
`settlement.py`); no answer is looked up once by the same key and otherwise left to the recovery
pass (`recovery.py`), which finishes it exactly once. When a slow answer arrives after the
recovery pass settled the charge, the request answers with what the pass decided. The
subscription exists only once its first charge succeeded.

With a trial nothing is charged: the card is verified and saved and the subscription starts
at once, its first charge due at trial end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from billing.domain.calendar import local_date
from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, CardToken, Outcome, PaymentProcessor
from billing.services.charging import ProcessorCall, call_processor
from billing.services.client_clock import load_client, merchant_clock
from billing.services.enrolment.settlement import (
    Enrolment,
    EnrolmentContext,
    decline_error,
    first_charge_description,
    first_period_start,
    new_subscription,
    record_created,
    settle_enrolment,
)
from billing.services.plans import get_plan
from billing.services.runtime import Runtime
from billing.services.transactions import get_transaction
from billing.store import charges as charge_store
from billing.store import payment_methods as method_store
from billing.store import subscriptions as subscription_store
from billing.store import transactions as trx_store
from billing.store.engine import Session, transaction
from billing.store.ids import new_id
from billing.store.models import Charge, PaymentMethod, Plan, Transaction

log = logging.getLogger("billing.enrolment")


@dataclass(frozen=True)
class VerifyCardRequest:
    """A verify-card call. `card` lives only for this call and is never stored."""

    transaction_id: str
    processor: str
    card: CardInfo
    create_subscription: bool = False
    plan_id: str | None = None
    user_id: str | None = None
    notification_email: str | None = None
    alias: str | None = None


def processor_named(
    processors: Mapping[str, Any], slug: str, *, field: str = "processor"
) -> PaymentProcessor:
    """The installed processor with this slug, or 7005 PROCESSOR_NOT_FOUND."""
    processor = processors.get(slug)
    if processor is None:
        installed = ", ".join(sorted(processors)) or "none"
        raise BillingError(
            "PROCESSOR_NOT_FOUND",
            message=f"No processor {slug!r} is installed (installed: {installed}).",
            field=field,
        )
    found: PaymentProcessor = processor
    return found


def _require_usable(trx: Transaction) -> None:
    if trx.status == "used":
        raise BillingError("TRANSACTION_ALREADY_USED", field="uid")
    if trx.status == "enrolling":
        raise BillingError(
            "STATE_CONFLICT",
            message="An enrolment on this transaction is in progress; wait for its outcome.",
            field="uid",
        )


def _cardholder(trx: Transaction, user_id: str | None) -> str:
    if user_id is not None and user_id != trx.user_id:
        raise BillingError(
            "CHECK_PARAMETERS", message="userId does not match the transaction's userId.", field="userId"
        )
    return trx.user_id


async def _enrolment_plan(
    session: Session, client_id: str, request: VerifyCardRequest, trx: Transaction
) -> Plan:
    if request.plan_id is None:
        raise BillingError(
            "CHECK_PARAMETERS",
            message="planUid is required when shouldCreateSubscription is true.",
            field="planUid",
        )
    plan = await get_plan(session, client_id=client_id, plan_id=request.plan_id, field="planUid")
    if plan.methods and request.processor not in plan.methods:
        raise BillingError(
            "PLAN_PROCESSOR_NOT_ALLOWED",
            message=f"The plan accepts {', '.join(plan.methods)}, not {request.processor!r}.",
            field="processor",
        )
    if plan.currency != trx.currency:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"The transaction is in {trx.currency} but the plan charges {plan.currency}.",
            field="planUid",
        )
    return plan


async def _claim(session: Session, client_id: str, trx_id: str, to_status: str) -> Transaction:
    """Move the transaction from `created` to `to_status`, or fail as a second request must."""
    trx = await get_transaction(session, client_id=client_id, trx_id=trx_id)
    if not await trx_store.move_transaction(session, trx, from_status="created", to_status=to_status):
        _require_usable(trx)
        raise BillingError("STATE_CONFLICT", field="uid")  # pragma: no cover - no other status exists
    return trx


async def tokenize(
    processor: PaymentProcessor, card: CardInfo, *, customer_ref: str, prefix: str
) -> CardToken:
    """Tokenize `card`; a refusal names the card field as the merchant sent it (`cardInfo.number`)."""
    try:
        return await processor.tokenize(card, customer_ref=customer_ref)
    except BillingError as exc:
        if exc.field is None:
            raise
        raise BillingError(exc.name, message=exc.message, field=prefix + exc.field) from exc


async def _verify(processor: PaymentProcessor, token: str, trx: Transaction, method_id: str) -> None:
    """Pre-authorize the transaction amount and release the hold; a refusal creates nothing."""
    outcome = await processor.authorize(
        token, trx.amount_minor, trx.currency, idempotency_key=f"verify:{trx.id}:{method_id}"
    )
    if outcome.status == "failed":
        raise decline_error(outcome)
    if outcome.status != "succeeded" or outcome.reference is None:
        raise BillingError("PROCESSOR_ERROR", message="The processor did not confirm the verification.")
    try:
        await processor.void(outcome.reference)
    except BillingError as exc:
        # The hold lapses on its own; failing the enrolment over it would help nobody.
        log.warning("verification hold not released", extra={"transaction_id": trx.id, "code": exc.code})


async def _send_charge(processor: PaymentProcessor, token: str, charge: Charge, description: str) -> Outcome:
    """Charge through the shared charge machinery, and on no answer ask once by the same key;
    never charge twice (the recovery pass resends under the same key later)."""
    call = ProcessorCall.for_row("charge", charge, token=token, description=description)
    outcome = await call_processor(processor, call)
    if outcome.status != "unknown":
        return outcome
    return await call_processor(processor, replace(call, mode="look_up"))


async def verify_card(runtime: Runtime, *, client_id: str, request: VerifyCardRequest) -> Enrolment:
    """Run verify-card for the client; see the module docstring for the order of events.

    Raises: 7042 unknown transaction, 7052 transaction already used, 7050 enrolment in flight,
    7005 unknown processor, 7040 unknown plan, 7053 processor not allowed by the plan,
    7000 bad parameters, a decline's code (7201, 7202, 7203, 7303, ...) when the card is refused at
    verification or at the first charge, 7205 (502) when the first charge's outcome is unknown.
    """
    async with runtime.sessions() as session:
        client = await load_client(session, client_id)
        trx = await get_transaction(session, client_id=client_id, trx_id=request.transaction_id)
        _require_usable(trx)
        processor = processor_named(runtime.processors, request.processor)
        user_id = _cardholder(trx, request.user_id)
        plan = (
            await _enrolment_plan(session, client_id, request, trx) if request.create_subscription else None
        )

    card_token = await tokenize(
        processor, request.card, customer_ref=f"{client_id}:{user_id}", prefix="cardInfo."
    )
    method_id = new_id("payment_method")
    await _verify(processor, card_token.token, trx, method_id)

    # Every timestamp this request writes is on the client's clock (a sandbox clock may run ahead).
    clock = merchant_clock(runtime.clock, client.clock_offset_seconds)
    now = clock.now()
    method = PaymentMethod(
        id=method_id,
        client_id=client_id,
        user_id=user_id,
        processor=processor.slug,
        token=card_token.token,
        brand=card_token.brand,
        last4=card_token.last4,
        exp_month=card_token.exp_month,
        exp_year=card_token.exp_year,
        alias=request.alias,
        status=method_store.ACTIVE,
        created_at=now,
    )
    if plan is None:
        async with transaction(runtime.sessions) as session:
            trx = await _claim(session, client_id, trx.id, "used")
            await method_store.add_payment_method(session, method)
        return Enrolment(transaction=trx, payment_method=method)

    local_now = now
    context = EnrolmentContext(
        trx_id=trx.id,
        plan_id=plan.id,
        user_id=user_id,
        payment_method_id=method_id,
        notification_email=request.notification_email,
        timezone=client.timezone,
        enrolled_on=local_date(local_now, client.timezone),
        enrolled_at=local_now,
        description=first_charge_description(plan),
    )
    if plan.trial_days > 0:
        async with transaction(runtime.sessions) as session:
            trx = await _claim(session, client_id, trx.id, "used")
            await method_store.add_payment_method(session, method)
            subscription = new_subscription(plan, context, client_id=client_id, now=now)
            await record_created(session, subscription, now=now)
        return Enrolment(transaction=trx, payment_method=method, subscription=subscription)

    charge = await _write_pending_charge(runtime, client_id, plan, method, context, now=clock.now())
    outcome = await _send_charge(processor, card_token.token, charge, context.description or "")
    if outcome.status == "unknown":
        async with transaction(runtime.sessions) as session:
            attached = await _reload(session, charge)
            await charge_store.finish_charge(
                session, attached, from_states=("pending",), state="unknown", updated_at=clock.now()
            )
        raise BillingError(
            "PROCESSOR_ERROR",
            message=(
                "The processor did not confirm the first charge. The enrolment completes (or fails) on its own "
                "once the processor answers; check GET /v1/subscriptions for this userId."
            ),
        )
    async with transaction(runtime.sessions) as session:
        attached = await _reload(session, charge)
        settled = await settle_enrolment(
            session,
            attached,
            outcome,
            now=clock.now(),
            settlement_country=runtime.settings.settlement.country,
        )
    if settled is None:
        # The answer came so late that the recovery pass settled the charge first (it resends
        # the same request under the same key, so both saw the same outcome): report its result.
        return await _settled_elsewhere(runtime, charge)
    if outcome.status == "failed":
        raise decline_error(outcome)
    return settled


async def _settled_elsewhere(runtime: Runtime, charge: Charge) -> Enrolment:
    """What an enrolment charge settled by the recovery pass produced; its decline is raised."""
    async with runtime.sessions() as session:
        settled = await _reload(session, charge)
        context = _context_of(settled)
        trx = await trx_store.get_transaction(session, settled.client_id, context.trx_id)
        method = await method_store.get_payment_method(session, settled.client_id, context.payment_method_id)
        subscription = (
            await subscription_store.get_subscription(session, settled.client_id, settled.subscription_id)
            if settled.subscription_id is not None
            else None
        )
    if settled.state == "failed":
        raise decline_error(
            Outcome(
                status="failed", decline_code=settled.decline_code, decline_message=settled.decline_message
            )
        )
    if settled.state != "succeeded" or trx is None or method is None or subscription is None:
        raise BillingError("STATE_CONFLICT", message="The enrolment was settled by another process.")
    return Enrolment(transaction=trx, payment_method=method, subscription=subscription, charge=settled)


def _context_of(charge: Charge) -> EnrolmentContext:
    if charge.charge_metadata is None:  # pragma: no cover - written with every enrolment charge
        raise ValueError(f"enrolment charge {charge.id} carries no enrolment context")
    return EnrolmentContext.from_metadata(charge.charge_metadata)


async def _reload(session: Session, charge: Charge) -> Charge:
    fresh = await session.get(Charge, charge.id)
    if fresh is None:  # pragma: no cover - committed above
        raise ValueError(f"charge {charge.id} vanished")
    return fresh


async def _write_pending_charge(
    runtime: Runtime,
    client_id: str,
    plan: Plan,
    method: PaymentMethod,
    context: EnrolmentContext,
    *,
    now: datetime,
) -> Charge:
    """Save the card and the pending first charge, and mark the transaction enrolling: one commit."""
    async with transaction(runtime.sessions) as session:
        await _claim(session, client_id, context.trx_id, "enrolling")
        await method_store.add_payment_method(session, method)
        attempt = await charge_store.enrolment_attempts(session, client_id, context.trx_id) + 1
        charge = Charge(
            id=new_id("charge"),
            client_id=client_id,
            subscription_id=None,
            kind="enrolment",
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            payment_method_id=method.id,
            processor=method.processor,
            period_start=first_period_start(plan, context),
            period_index=0,
            attempt=attempt,
            method_index=0,
            state="pending",
            idempotency_key=charge_store.enrolment_key(context.trx_id, attempt),
            charge_metadata=context.to_metadata(),
            created_at=now,
            updated_at=now,
        )
        if not await charge_store.add_charge(session, charge):
            raise BillingError(
                "STATE_CONFLICT", message="Another enrolment on this transaction started first."
            )
    return charge
