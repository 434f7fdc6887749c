"""verify-card below HTTP: what is written before and after each processor call, and how an
enrolment whose first charge got no answer (or whose process died) is finished exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.enrolment import VerifyCardRequest, run_recovery, verify_card
from billing.services.plans import PlanRules, PlanTerms, create_plan
from billing.services.runtime import Runtime
from billing.services.transactions import TransactionRequest, create_transaction
from billing.store.models import Charge, Event, PaymentMethod, Subscription, Transaction
from tests.api.conftest import CHARGES_DECLINE, GOOD_CARD, INSUFFICIENT_FUNDS
from tests.clock import FixedClock

pytestmark = pytest.mark.anyio


class FlakySandbox(SandboxProcessor):
    """A sandbox whose charges can lose their answer, or whose process can "die" around a charge."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(clock=clock)
        self.lose_answers = False  # the charge happens, the answer never arrives
        self.answering = True  # lookups work
        self.die: str | None = None  # "before" or "after" the processor saw the charge
        self.charges = 0

    async def charge(self, token: str, amount_minor: int, currency: str, **kwargs: Any) -> Outcome:
        if self.die == "before":
            raise RuntimeError("process died before the request left")
        self.charges += 1
        outcome = await super().charge(token, amount_minor, currency, **kwargs)
        if self.die == "after":
            raise RuntimeError("process died after the processor charged")
        return Outcome.unknown() if self.lose_answers else outcome

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        if not self.answering:
            raise BillingError("PROCESSOR_ERROR")
        return await super().lookup(idempotency_key)


@pytest.fixture
def flaky(service_runtime: Runtime, clock: FixedClock) -> FlakySandbox:
    processor = FlakySandbox(clock)
    service_runtime.processors["sandbox"] = processor
    return processor


def _card(number: str) -> CardInfo:
    return CardInfo(number=number, exp_month=12, exp_year=2030, cvv="123", holder_name="Ada")


async def _plan(runtime: Runtime, client_id: str, **terms: Any) -> str:
    base: dict[str, Any] = {
        "name": "Pro",
        "amount": 10,
        "currency": "USD",
        "type": "interval",
        "frequency": 30,
    }
    base.update(terms)
    async with runtime.sessions() as session, session.begin():
        plan = await create_plan(
            session,
            client_id=client_id,
            terms=PlanTerms(**base),
            rules=PlanRules.of(runtime.processors, runtime.settings.grace),
            now=runtime.clock.now(),
        )
    return plan.id


async def _trx(runtime: Runtime, client_id: str) -> str:
    async with runtime.sessions() as session, session.begin():
        trx = await create_transaction(
            session,
            client_id=client_id,
            request=TransactionRequest(amount=1, currency="USD", user_id="user-1"),
            now=runtime.clock.now(),
        )
    return trx.id


def _request(trx_id: str, plan_id: str | None, number: str = GOOD_CARD) -> VerifyCardRequest:
    return VerifyCardRequest(
        transaction_id=trx_id,
        processor="sandbox",
        card=_card(number),
        create_subscription=plan_id is not None,
        plan_id=plan_id,
    )


async def _all(runtime: Runtime, model: Any) -> list[Any]:
    async with runtime.sessions() as session:
        return list((await session.exec(select(model))).all())


async def _trx_status(runtime: Runtime, trx_id: str) -> str:
    async with runtime.sessions() as session:
        trx = await session.get(Transaction, trx_id)
        assert trx is not None
        return trx.status


async def test_a_good_card_enrols_with_one_succeeded_charge_and_two_events(
    service_runtime: Runtime, shop: str
) -> None:
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)

    result = await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))

    assert result.subscription is not None
    assert result.charge is not None
    [charge] = await _all(service_runtime, Charge)
    assert (charge.state, charge.kind, charge.subscription_id) == (
        "succeeded",
        "enrolment",
        result.subscription.id,
    )
    assert charge.idempotency_key == f"enrol:{trx_id}:1"
    events = sorted(await _all(service_runtime, Event), key=lambda e: e.sequence)
    assert [(e.type, e.sequence) for e in events] == [("subscription.created", 1), ("charge.succeeded", 2)]
    assert await _trx_status(service_runtime, trx_id) == "used"
    with pytest.raises(BillingError) as again:
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    assert again.value.code == "7052"


async def test_a_card_refused_at_verification_leaves_nothing_behind(
    service_runtime: Runtime, shop: str
) -> None:
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)

    with pytest.raises(BillingError) as refused:
        await verify_card(
            service_runtime, client_id=shop, request=_request(trx_id, plan_id, INSUFFICIENT_FUNDS)
        )

    assert (refused.value.code, refused.value.status) == ("7303", 402)
    assert await _all(service_runtime, Subscription) == []
    assert await _all(service_runtime, Charge) == []
    assert await _all(service_runtime, PaymentMethod) == []
    assert await _trx_status(service_runtime, trx_id) == "created"


async def test_a_declined_first_charge_retires_the_card_and_frees_the_transaction(
    service_runtime: Runtime, shop: str
) -> None:
    """The card verifies but its first charge is declined: no subscription, and the same
    transaction can be enrolled again with another card (attempt 2 gets its own key)."""
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)

    with pytest.raises(BillingError) as declined:
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id, CHARGES_DECLINE))

    assert declined.value.code == "7201"
    [failed] = await _all(service_runtime, Charge)
    assert (failed.state, failed.decline_code, failed.subscription_id) == ("failed", "7201", None)
    [retired] = await _all(service_runtime, PaymentMethod)
    assert retired.status == "removed"
    assert [e.type for e in await _all(service_runtime, Event)] == ["charge.failed"]
    assert await _subscriptions(service_runtime) == 0
    assert await _trx_status(service_runtime, trx_id) == "created"

    result = await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    assert result.charge is not None
    assert result.charge.idempotency_key == f"enrol:{trx_id}:2"
    assert await _subscriptions(service_runtime) == 1


async def _subscriptions(runtime: Runtime) -> int:
    return len(await _all(runtime, Subscription))


async def test_an_unanswered_first_charge_is_502_then_settled_exactly_once_by_recovery(
    service_runtime: Runtime, shop: str, flaky: FlakySandbox, clock: FixedClock
) -> None:
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    flaky.lose_answers, flaky.answering = True, False

    with pytest.raises(BillingError) as unknown:
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))

    assert (unknown.value.code, unknown.value.status) == ("7205", 502)
    [charge] = await _all(service_runtime, Charge)
    assert charge.state == "unknown"
    assert await _trx_status(service_runtime, trx_id) == "enrolling"
    # A second verify-card while the first is unresolved must not charge again.
    with pytest.raises(BillingError) as busy:
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    assert (busy.value.code, busy.value.status) == ("7050", 409)
    assert flaky.charges == 1

    # Younger than a minute: the request may still be finishing it, so the pass leaves it alone.
    assert await run_recovery(service_runtime, "w") == {
        "succeeded": 0,
        "failed": 0,
        "unresolved": 0,
    }
    clock.advance(timedelta(minutes=2))
    # The processor still cannot tell: nothing is decided, the charge is asked about again later.
    assert (await run_recovery(service_runtime, "w"))["unresolved"] == 1
    assert await _subscriptions(service_runtime) == 0

    flaky.answering = True
    clock.advance(timedelta(minutes=2))
    results = await asyncio.gather(*(run_recovery(service_runtime, f"w{i}") for i in range(3)))

    assert sum(r["succeeded"] for r in results) == 1
    [subscription] = await _all(service_runtime, Subscription)
    [charge] = await _all(service_runtime, Charge)
    assert (charge.state, charge.subscription_id) == ("succeeded", subscription.id)
    assert sorted(e.type for e in await _all(service_runtime, Event)) == [
        "charge.succeeded",
        "subscription.created",
    ]
    assert await _trx_status(service_runtime, trx_id) == "used"
    assert await run_recovery(service_runtime, "w") == {
        "succeeded": 0,
        "failed": 0,
        "unresolved": 0,
    }
    assert flaky.charges == 1


async def test_a_process_that_died_after_charging_is_finished_with_the_enrolment_schedule(
    service_runtime: Runtime, shop: str, flaky: FlakySandbox, clock: FixedClock
) -> None:
    """The subscription is dated from the enrolment, not from when recovery found the charge."""
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    flaky.die = "after"

    with pytest.raises(RuntimeError):
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    [charge] = await _all(service_runtime, Charge)
    assert charge.state == "pending"

    clock.advance(timedelta(days=2))
    assert (await run_recovery(service_runtime, "w"))["succeeded"] == 1

    [subscription] = await _all(service_runtime, Subscription)
    assert str(subscription.anchor_date) == "2026-01-15"
    assert subscription.next_attempt_at.isoformat() == "2026-02-14T06:00:00+00:00"  # Feb 14, 00:00 Guatemala
    assert (subscription.period_index, subscription.cycles_paid) == (0, 1)


async def test_a_charge_the_processor_never_saw_is_sent_again_under_its_key(
    service_runtime: Runtime, shop: str, flaky: FlakySandbox, clock: FixedClock
) -> None:
    """ "Never seen" is not a decline: the request may still arrive. The pass sends the same
    charge under the same key and settles on that answer; until it gets one, nothing is decided."""
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    flaky.die = "before"

    with pytest.raises(RuntimeError):
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    clock.advance(timedelta(minutes=2))
    # The resend cannot get through either: the charge stays open, the card and transaction held.
    assert (await run_recovery(service_runtime, "w"))["unresolved"] == 1
    [charge] = await _all(service_runtime, Charge)
    assert charge.state == "unknown"
    assert await _trx_status(service_runtime, trx_id) == "enrolling"
    assert [m.status for m in await _all(service_runtime, PaymentMethod)] == ["active"]

    flaky.die = None
    clock.advance(timedelta(minutes=2))
    assert (await run_recovery(service_runtime, "w"))["succeeded"] == 1

    [charge] = await _all(service_runtime, Charge)
    [subscription] = await _all(service_runtime, Subscription)
    assert (charge.state, charge.subscription_id) == ("succeeded", subscription.id)
    assert charge.idempotency_key == f"enrol:{trx_id}:1"
    assert flaky.charges == 1
    assert await _trx_status(service_runtime, trx_id) == "used"


async def test_a_trial_enrols_without_charging(service_runtime: Runtime, shop: str) -> None:
    plan_id = await _plan(service_runtime, shop, trial_days=14)
    trx_id = await _trx(service_runtime, shop)

    result = await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))

    subscription = result.subscription
    assert subscription is not None
    assert result.charge is None
    assert await _all(service_runtime, Charge) == []
    assert (subscription.period_index, subscription.cycles_paid) == (-1, 0)
    # Jan 15 + 14 days = Jan 29, 00:00 in Guatemala (UTC-6): the first charge and the schedule's anchor.
    assert subscription.trial_ends_at is not None
    # 14 x 24 h from 06:00 local on Jan 15 end during Jan 29: the trial ends at the next local midnight.
    assert subscription.trial_ends_at.isoformat() == "2026-01-30T06:00:00+00:00"
    assert subscription.next_attempt_at == subscription.current_period_end == subscription.trial_ends_at
    assert str(subscription.anchor_date) == "2026-01-30"
    assert [e.type for e in await _all(service_runtime, Event)] == ["subscription.created"]


async def test_verifying_without_a_plan_saves_the_card_and_uses_the_transaction(
    service_runtime: Runtime, shop: str
) -> None:
    trx_id = await _trx(service_runtime, shop)

    result = await verify_card(service_runtime, client_id=shop, request=_request(trx_id, None))

    assert result.subscription is None
    assert result.payment_method.status == "active"
    assert "4242424242424242" not in result.payment_method.token
    assert await _trx_status(service_runtime, trx_id) == "used"
    assert await _all(service_runtime, Charge) == []
