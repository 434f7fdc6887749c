"""A payment link on Stripe (localstripe on loopback): the page tokenizes through the same
server-side path verify-card uses, and picks the processor the plan allows."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conftest import create_plan, data_of
from tests.api.test_payment_pages import card_form, link, submit, text_of

# The API with both processors, `stripe` talking to localstripe (fixtures used by name below).
from tests.api.test_stripe_enrolment import app, localstripe_admin, localstripe_url

__all__ = ["app", "localstripe_admin", "localstripe_url"]

pytestmark = pytest.mark.anyio


async def processor_of(merchant: Any, receipt: Any) -> str:
    subscription_id = re.search(r"(sub_[0-9A-Z]+)", receipt.text)
    assert subscription_id, text_of(receipt)
    history = data_of(
        await merchant.get(
            "/v1/subscriptions/payment-history", params={"subscriptionId": subscription_id.group(1)}
        )
    )
    assert [charge["state"] for charge in history] == ["succeeded"]
    processor: str = history[0]["processor"]
    return processor


async def test_a_plan_on_stripe_enrols_through_stripe(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant, methods=["stripe"])
    trx = await link(merchant, planUid=plan["id"])

    receipt = await submit(client, trx, card_form())

    assert receipt.status_code == 200, text_of(receipt)
    assert await processor_of(merchant, receipt) == "stripe"


async def test_a_production_client_without_a_processor_list_uses_the_real_processor(
    merchant_factory: Any, client: Any
) -> None:
    live = await merchant_factory(name="Live", environment="production")
    plan = await create_plan(live)
    trx = await link(live, planUid=plan["id"])

    page = await client.get(f"/pay/{trx['reference']}")
    receipt = await submit(client, trx, card_form())

    assert "4242" not in text_of(page)
    assert receipt.status_code == 200, text_of(receipt)
    assert await processor_of(live, receipt) == "stripe"
