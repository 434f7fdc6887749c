"""The same enrolment through `stripe` (against localstripe on loopback) as through `sandbox`.

The localstripe server is the processors suite's session fixture, imported from there.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.app import create_app
from billing.processors.sandbox import SandboxProcessor
from billing.processors.stripe import StripeProcessor
from tests.api.conftest import (
    GOOD_CARD,
    INSUFFICIENT_FUNDS,
    create_plan,
    data_of,
    enrol,
    error_of,
    verify_card,
)
from tests.processors.conftest import TEST_KEY, localstripe_admin, localstripe_url

__all__ = ["localstripe_admin", "localstripe_url"]  # fixtures used by name below

pytestmark = pytest.mark.anyio

PROCESSORS = ["sandbox", "stripe"]


@pytest.fixture
async def app(settings: Any, clock: Any, localstripe_url: str, localstripe_admin: httpx.Client) -> Any:
    """The API with both processors installed; `stripe` talks to localstripe."""
    processors = {
        "sandbox": SandboxProcessor(clock=clock),
        "stripe": StripeProcessor(TEST_KEY, base_url=localstripe_url, localstripe=True),
    }
    return create_app(settings, clock=clock, processors=processors)


@pytest.mark.parametrize("processor", PROCESSORS)
async def test_the_good_card_enrols_the_same_way_on_both_processors(merchant: Any, processor: str) -> None:
    plan = await create_plan(merchant, amount=29.9, methods=PROCESSORS)

    result = await enrol(merchant, plan["id"], number=GOOD_CARD, processor=processor)

    subscription = result["subscription"]
    assert (subscription["status"], subscription["cyclesPaid"]) == ("active", 1)
    assert subscription["nextRenewalDate"] == "2026-02-14T00:00:00-06:00"
    assert (result["paymentMethod"]["processor"], result["paymentMethod"]["last4"]) == (processor, "4242")
    history = data_of(
        await merchant.get("/v1/subscriptions/payment-history", params={"subscriptionId": subscription["id"]})
    )
    assert [(c["kind"], c["state"], c["amount"], c["processor"]) for c in history] == [
        ("enrolment", "succeeded", 29.9, processor)
    ]


@pytest.mark.parametrize(("processor", "code"), [("sandbox", "7303"), ("stripe", "7201")])
async def test_insufficient_funds_is_declined_with_no_subscription_on_both_processors(
    merchant: Any, processor: str, code: str
) -> None:
    """localstripe refuses 4000000000009995 with a bare `card_declined` (no `decline_code`), which
    reads as 7201; Stripe's own answer carries `insufficient_funds` and reads as 7303, as
    test_stripe_recorded_decline.py shows. Either way: a 402 decline and nothing enrolled."""
    plan = await create_plan(merchant, methods=PROCESSORS)

    response = await verify_card(
        merchant, plan_id=plan["id"], number=INSUFFICIENT_FUNDS, processor=processor, user="u9"
    )

    error_of(response, 402, code)
    found = await merchant.get("/v1/subscriptions", params={"userId": "u9", "clientId": merchant.id})
    assert data_of(found) == []


async def test_the_stripe_charge_is_really_at_stripe(merchant: Any, localstripe_admin: httpx.Client) -> None:
    plan = await create_plan(merchant, amount=12.5, methods=["stripe"])

    result = await enrol(merchant, plan["id"], processor="stripe")

    intents = localstripe_admin.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    captured = [
        i for i in intents if i["metadata"].get("idempotency_key") == f"enrol:{result['transactionUid']}:1"
    ]
    assert [(i["amount"], i["currency"], i["status"]) for i in captured] == [(1250, "usd", "succeeded")]
    # The verification hold on the transaction amount was released, not captured.
    holds = [i for i in intents if i["metadata"].get("operation") == "authorize"]
    assert [i["status"] for i in holds] == ["canceled"]


async def test_a_plan_can_restrict_its_processors(merchant: Any) -> None:
    plan = await create_plan(merchant, methods=["sandbox"])

    error_of(await verify_card(merchant, plan_id=plan["id"], processor="stripe"), 400, "7053", "processor")
