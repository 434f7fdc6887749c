"""Recovering an enrolment charge the processor has no record of (yet).

"Lookup found nothing" is not a decline: the request may still be on its way, or the
processor's search may trail its writes. The recovery pass sends the very same charge again under
the same key and settles on that answer, so money that moved is always recorded as moved and a
cardholder is never charged twice for one enrolment.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.processors.stripe import StripeProcessor
from billing.services.enrolment import VerifyCardRequest, run_recovery, verify_card
from billing.services.runtime import Runtime
from billing.store.engine import transaction
from billing.store.models import Charge, PaymentMethod, Plan, Subscription, Transaction
from tests.api.conftest import CHARGES_DECLINE, GOOD_CARD
from tests.api.fake_stripe import FakeStripe
from tests.clock import FixedClock
from tests.services.enrolment.test_enrolment_service import _card, _plan, _request, _trx

pytestmark = pytest.mark.anyio


class SlowSandbox(SandboxProcessor):
    """The first charge reaches the processor only once `gate` opens (a slow network, a pause)."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(clock=clock)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.slow_once = True

    async def charge(self, token: str, amount_minor: int, currency: str, **kwargs: Any) -> Outcome:
        if self.slow_once:
            self.slow_once = False
            self.entered.set()
            await self.gate.wait()
        return await super().charge(token, amount_minor, currency, **kwargs)


@pytest.fixture
def slow(service_runtime: Runtime, clock: FixedClock) -> SlowSandbox:
    processor = SlowSandbox(clock)
    service_runtime.processors["sandbox"] = processor
    return processor


def _charges_at(sandbox: SandboxProcessor, status: str) -> list[Any]:
    return [
        e for e in sandbox.ledger.entries.values() if e.operation == "charge" and e.outcome.status == status
    ]


async def _rows(runtime: Runtime, model: Any) -> list[Any]:
    async with runtime.sessions() as session:
        return list((await session.exec(select(model))).all())


async def _trx_status(runtime: Runtime, trx_id: str) -> str:
    async with runtime.sessions() as session:
        trx = await session.get(Transaction, trx_id)
        assert trx is not None
        return trx.status


async def _rename_plan(runtime: Runtime, plan_id: str, name: str) -> None:
    async with transaction(runtime.sessions) as session:
        plan = await session.get(Plan, plan_id)
        assert plan is not None
        plan.name = name


async def test_an_in_flight_charge_the_pass_takes_over_is_recorded_as_the_money_moved(
    service_runtime: Runtime, shop: str, clock: FixedClock, slow: SlowSandbox
) -> None:
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)

    request = asyncio.create_task(
        verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    )
    await slow.entered.wait()  # the pending charge is committed and the call is under way
    clock.advance(timedelta(minutes=2))  # ... so slowly that the recovery pass takes over
    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 1
    slow.gate.set()  # the first call lands now: same key, so the processor replays its answer
    result = await request

    assert len(_charges_at(slow, "succeeded")) == 1
    [charge] = await _rows(service_runtime, Charge)
    [subscription] = await _rows(service_runtime, Subscription)
    assert (charge.state, charge.subscription_id) == ("succeeded", subscription.id)
    # The request answers with the enrolment the pass completed, not with a conflict.
    assert result.subscription is not None
    assert result.subscription.id == subscription.id
    assert result.charge is not None
    assert result.charge.id == charge.id
    assert await _trx_status(service_runtime, trx_id) == "used"
    # A retry by the cardholder cannot charge again.
    with pytest.raises(BillingError) as again:
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    assert again.value.code == "7052"
    assert len(_charges_at(slow, "succeeded")) == 1


async def test_an_in_flight_charge_the_pass_declines_answers_the_request_with_the_decline(
    service_runtime: Runtime, shop: str, clock: FixedClock, slow: SlowSandbox
) -> None:
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)

    request = asyncio.create_task(
        verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id, CHARGES_DECLINE))
    )
    await slow.entered.wait()
    clock.advance(timedelta(minutes=2))
    assert (await run_recovery(service_runtime, "w1"))["failed"] == 1
    slow.gate.set()
    with pytest.raises(BillingError) as declined:
        await request

    assert declined.value.code == "7201"
    [charge] = await _rows(service_runtime, Charge)
    assert (charge.state, charge.decline_code) == ("failed", "7201")
    assert await _rows(service_runtime, Subscription) == []
    assert await _trx_status(service_runtime, trx_id) == "created"
    assert len(_charges_at(slow, "failed")) == 1


async def test_the_resend_carries_the_description_the_charge_was_first_sent_with(
    service_runtime: Runtime, shop: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = service_runtime.processors["sandbox"]
    assert isinstance(sandbox, SandboxProcessor)
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    sent: list[str] = []

    async def charge_lost_on_the_way(token: str, amount: int, currency: str, **kwargs: Any) -> Outcome:
        sent.append(kwargs["description"])
        return Outcome.unknown()  # never reached the processor

    monkeypatch.setattr(sandbox, "charge", charge_lost_on_the_way)
    with pytest.raises(BillingError):
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    monkeypatch.undo()
    await _rename_plan(service_runtime, plan_id, "Pro Plus")
    clock.advance(timedelta(minutes=2))

    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 1

    [entry] = _charges_at(sandbox, "succeeded")
    assert sent == [entry.description] == ["Pro (first period)"]
    assert entry.idempotency_key == f"enrol:{trx_id}:1"


@pytest.fixture
def stripe(service_runtime: Runtime, clock: FixedClock) -> FakeStripe:
    fake = FakeStripe()
    service_runtime.processors["stripe"] = StripeProcessor(
        "sk_test_resend_0123456789", transport=fake.transport(), clock=clock
    )
    return fake


def _stripe_request(trx_id: str, plan_id: str) -> VerifyCardRequest:
    return VerifyCardRequest(
        transaction_id=trx_id,
        processor="stripe",
        card=_card(GOOD_CARD),
        create_subscription=True,
        plan_id=plan_id,
    )


async def test_a_stripe_charge_whose_answer_was_lost_is_replayed_not_failed(
    service_runtime: Runtime, shop: str, clock: FixedClock, stripe: FakeStripe
) -> None:
    """Stripe made the charge, its answer was lost and its search index has not caught up: the
    pass resends the identical request (the plan was renamed meanwhile) and Stripe replays it."""
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    stripe.lose_charge_answers = True

    with pytest.raises(BillingError) as unknown:
        await verify_card(service_runtime, client_id=shop, request=_stripe_request(trx_id, plan_id))
    assert unknown.value.code == "7205"
    stripe.lose_charge_answers = False
    await _rename_plan(service_runtime, plan_id, "Pro Plus")
    clock.advance(timedelta(minutes=2))

    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 1

    [intent] = stripe.charges()
    assert intent["description"] == "Pro (first period)"
    [charge] = await _rows(service_runtime, Charge)
    [subscription] = await _rows(service_runtime, Subscription)
    assert (charge.state, charge.processor_reference, charge.subscription_id) == (
        "succeeded",
        intent["id"],
        subscription.id,
    )
    assert [m.status for m in await _rows(service_runtime, PaymentMethod)] == ["active"]
    assert await _trx_status(service_runtime, trx_id) == "used"


async def test_a_key_stripe_refuses_as_reused_stays_open_until_lookup_can_tell(
    service_runtime: Runtime, shop: str, clock: FixedClock, stripe: FakeStripe
) -> None:
    """A charge row from before descriptions were kept, and a renamed plan: the resend differs,
    Stripe answers `idempotency_error`. That is no decline; the charge waits for the search."""
    plan_id = await _plan(service_runtime, shop)
    trx_id = await _trx(service_runtime, shop)
    stripe.lose_charge_answers = True
    with pytest.raises(BillingError):
        await verify_card(service_runtime, client_id=shop, request=_stripe_request(trx_id, plan_id))
    stripe.lose_charge_answers = False
    async with transaction(service_runtime.sessions) as session:
        [charge] = (await session.exec(select(Charge))).all()
        assert charge.charge_metadata is not None
        charge.charge_metadata = {k: v for k, v in charge.charge_metadata.items() if k != "description"}
    await _rename_plan(service_runtime, plan_id, "Pro Plus")
    clock.advance(timedelta(minutes=2))

    assert (await run_recovery(service_runtime, "w1"))["unresolved"] == 1
    [charge] = await _rows(service_runtime, Charge)
    assert charge.state == "unknown"
    assert await _trx_status(service_runtime, trx_id) == "enrolling"

    stripe.search_lags = False
    clock.advance(timedelta(minutes=2))
    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 1
    assert len(stripe.charges()) == 1
    [charge] = await _rows(service_runtime, Charge)
    assert charge.state == "succeeded"
    assert len(await _rows(service_runtime, Subscription)) == 1
