"""Refunds through the API on `stripe` (localstripe on loopback): the same route, Stripe's refunds.

Stripe cannot void a captured PaymentIntent, so even the whole amount before settlement is a
refund there; the refunds land on the charge's PaymentIntent, tagged with the refund's key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.app import create_app
from billing.processors.stripe import StripeProcessor
from tests.api.conftest import GOOD_CARD, create_plan, data_of, enrol, error_of
from tests.processors.conftest import TEST_KEY, localstripe_admin, localstripe_url

__all__ = ["localstripe_admin", "localstripe_url"]  # fixtures used by name below

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(settings: Any, clock: Any, localstripe_url: str, localstripe_admin: httpx.Client) -> Any:
    processors = {"stripe": StripeProcessor(TEST_KEY, base_url=localstripe_url, localstripe=True)}
    return create_app(settings, clock=clock, processors=processors)


async def test_partial_then_the_rest_on_stripe(merchant: Any, localstripe_admin: httpx.Client) -> None:
    plan = await create_plan(merchant, amount="29.90", methods=["stripe"])
    charge = (await enrol(merchant, plan["id"], number=GOOD_CARD, processor="stripe"))["charge"]

    first = data_of(await merchant.post(f"/v1/charges/{charge['id']}/refund", json={"amount": "10.00"}), 201)
    rest = data_of(await merchant.post(f"/v1/charges/{charge['id']}/refund", json={}), 201)
    error_of(await merchant.post(f"/v1/charges/{charge['id']}/refund", json={"amount": "0.01"}), 409, "7061")

    made = [first["refund"], rest["refund"]]
    assert [(r["state"], r["method"], Decimal(str(r["amount"]))) for r in made] == [
        ("succeeded", "refund", Decimal("10.00")),
        ("succeeded", "refund", Decimal("19.90")),
    ]
    assert Decimal(str(rest["charge"]["refundedAmount"])) == Decimal("29.90")
    page = localstripe_admin.get(
        "/v1/refunds", params={"payment_intent": charge["processorReference"]}
    ).json()
    at_stripe = {r["id"]: (r["amount"], r["metadata"]["idempotency_key"]) for r in page["data"]}
    assert at_stripe == {
        made[0]["processorReference"]: (1000, f"refund:{made[0]['id']}"),
        made[1]["processorReference"]: (1990, f"refund:{made[1]['id']}"),
    }
