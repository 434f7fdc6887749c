"""`POST /webhooks/stripe`: Stripe's own events, signed with its `Stripe-Signature` scheme, resolve
charges through the same code as processor notifications. Payloads are shaped like Stripe's
documented events (an `event` object whose `data.object` is the PaymentIntent or Charge)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from billing.processors.sandbox import SandboxProcessor
from billing.processors.stripe import StripeProcessor
from tests.api.conftest import create_plan, data_of, error_of, verify_card
from tests.api.fake_stripe import FakeStripe
from tests.api.inbound_helpers import (
    STRIPE_SECRET,
    all_events,
    charges_of,
    events_about,
    inbound_settings,
    stripe_headers,
)
from tests.conftest import test_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(db_url, tmp_path, **inbound_settings())


@pytest.fixture
def fake_stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
async def app(settings: Any, clock: Any, fake_stripe: FakeStripe) -> AsyncIterator[Any]:
    from api.app import create_app

    processors = {
        "sandbox": SandboxProcessor(clock=clock),
        "stripe": StripeProcessor(
            "sk_test_inbound_0123456789", transport=fake_stripe.transport(), clock=clock
        ),
    }
    return create_app(settings, clock=clock, processors=processors)


def stripe_event(event_id: str, event_type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_test", "idempotency_key": obj.get("metadata", {}).get("idempotency_key")},
        "type": event_type,
        "data": {"object": obj},
    }


async def _post(client: Any, event: dict[str, Any], clock: Any, secret: str = STRIPE_SECRET) -> Any:
    body = json.dumps(event, separators=(",", ":")).encode()
    return await client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, secret=secret, at=clock.now())
    )


async def test_an_enrolment_charge_whose_answer_was_lost_is_resolved_by_stripes_event(
    client: Any, merchant: Any, runtime: Any, clock: Any, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(merchant, methods=["stripe"])
    fake_stripe.lose_charge_answers = True
    answer = await verify_card(merchant, plan_id=plan["id"], processor="stripe")
    assert answer.status_code == 502, answer.text
    fake_stripe.lose_charge_answers = False
    [charge] = [c for c in await charges_of(runtime) if c.kind == "enrolment"]
    assert charge.state == "unknown"
    [intent] = fake_stripe.charges()
    created = int(clock.now().timestamp())

    data = data_of(
        await _post(client, stripe_event("evt_1Stripe", "payment_intent.succeeded", intent, created), clock)
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "succeeded")
    [after] = [c for c in await charges_of(runtime) if c.id == charge.id]
    assert (after.state, after.processor_reference) == ("succeeded", intent["id"])
    assert after.subscription_id is not None
    assert after.expected_settlement_date is not None
    events = await all_events(merchant)
    assert len(events_about(events, "charge.succeeded", charge.id)) == 1

    # Stripe redelivers: one effect.
    again = data_of(
        await _post(client, stripe_event("evt_1Stripe", "payment_intent.succeeded", intent, created), clock)
    )
    assert again["duplicate"] is True
    assert await all_events(merchant) == events

    # A failure event for the same intent contradicts the final state: kept, announced, not applied.
    failed = dict(
        intent,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    data = data_of(
        await _post(
            client, stripe_event("evt_2Stripe", "payment_intent.payment_failed", failed, created), clock
        )
    )
    assert (data["resolution"], data["chargeState"]) == ("disputed", "succeeded")
    [event] = events_about(await all_events(merchant), "charge.disputed_outcome", charge.id)
    assert (event["data"]["notifiedState"], event["data"]["declineCode"]) == ("failed", "7303")

    # A refund is recorded, not applied (refunds are their own resource).
    refunded_charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": intent["amount"],
        "amount_refunded": intent["amount"],
        "currency": intent["currency"],
        "payment_intent": intent["id"],
        "refunded": True,
        "metadata": {},
    }
    data = data_of(
        await _post(client, stripe_event("evt_3Stripe", "charge.refunded", refunded_charge, created), clock)
    )
    assert (data["resolution"], data["chargeId"], data["chargeState"]) == ("recorded", charge.id, "succeeded")


async def test_a_failed_intent_fails_the_open_charge(
    client: Any, merchant: Any, runtime: Any, clock: Any, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(merchant, methods=["stripe"])
    fake_stripe.lose_charge_answers = True
    assert (await verify_card(merchant, plan_id=plan["id"], processor="stripe")).status_code == 502
    fake_stripe.lose_charge_answers = False
    [intent] = fake_stripe.charges()
    failed = dict(
        intent,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    data = data_of(
        await _post(
            client,
            stripe_event("evt_fail", "payment_intent.payment_failed", failed, int(clock.now().timestamp())),
            clock,
        )
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "failed")
    [charge] = [c for c in await charges_of(runtime) if c.kind == "enrolment"]
    assert (charge.state, charge.decline_code, charge.subscription_id) == ("failed", "7303", None)


async def test_stripe_signature_rules(client: Any, clock: Any) -> None:
    event = stripe_event("evt_sig", "customer.created", {"id": "cus_1", "object": "customer"}, 0)
    body = json.dumps(event).encode()
    good = stripe_headers(body, secret=STRIPE_SECRET, at=clock.now())
    assert (
        data_of(await client.post("/webhooks/stripe", content=body, headers=good))["resolution"] == "ignored"
    )
    cases = [
        stripe_headers(body, secret="whsec_other", at=clock.now()),
        stripe_headers(body, secret=STRIPE_SECRET, at=clock.now() - timedelta(seconds=301)),
        {"Content-Type": "application/json", "Stripe-Signature": "t=abc,v1=def"},
        {"Content-Type": "application/json"},
    ]
    for headers in cases:
        error_of(await client.post("/webhooks/stripe", content=body, headers=headers), 401, "7070")
    reserialised = json.dumps(event, indent=1).encode()
    error_of(await client.post("/webhooks/stripe", content=reserialised, headers=good), 401, "7070")
    # Several v1 signatures (Stripe sends one per active secret during a roll): any may match.
    t = int(clock.now().timestamp())
    rolled = good["Stripe-Signature"].replace(f"t={t},", f"t={t},v1={'0' * 64},v0=ignored,")
    answer = await client.post("/webhooks/stripe", content=body, headers={**good, "Stripe-Signature": rolled})
    assert data_of(answer)["duplicate"] is False
    missing_object = stripe_event("evt_noobj", "payment_intent.succeeded", {}, 0)
    missing_object["data"] = {}
    body = json.dumps(missing_object).encode()
    answer = await client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, secret=STRIPE_SECRET, at=clock.now())
    )
    error_of(answer, 400, "7000", "data.object")
