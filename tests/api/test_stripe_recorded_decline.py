"""verify-card through `stripe` when Stripe refuses the card for insufficient funds: 7303, nothing enrolled.

localstripe cannot produce this answer (it declines 4000000000009995 without a decline code), so
the Stripe side is Stripe's recorded answers, served by an httpx MockTransport.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.app import create_app
from billing.processors.stripe import StripeProcessor
from tests.api.conftest import INSUFFICIENT_FUNDS, create_plan, data_of, error_of, verify_card

pytestmark = pytest.mark.anyio


class RecordedStripe:
    """Stripe's answers to tokenizing 4000000000009995: the card attaches to nothing, the customer goes."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/payment_methods":
            card = {"brand": "visa", "last4": "9995", "exp_month": 12, "exp_year": 2030}
            return httpx.Response(200, json={"id": "pm_9995", "object": "payment_method", "card": card})
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json={"id": "cus_9995", "object": "customer"})
        if request.url.path.endswith("/attach"):
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            }
            return httpx.Response(402, json={"error": error})
        if request.method == "DELETE":
            return httpx.Response(200, json={"id": "cus_9995", "deleted": True})
        return httpx.Response(500, json={"error": {"type": "api_error"}})


@pytest.fixture
def stripe_answers() -> RecordedStripe:
    return RecordedStripe()


@pytest.fixture
async def app(settings: Any, clock: Any, stripe_answers: RecordedStripe) -> Any:
    stripe = StripeProcessor("sk_test_recorded", transport=httpx.MockTransport(stripe_answers))
    return create_app(settings, clock=clock, processors={"stripe": stripe})


async def test_stripes_insufficient_funds_answer_is_7303_and_enrols_nothing(
    merchant: Any, stripe_answers: RecordedStripe
) -> None:
    plan = await create_plan(merchant, methods=["stripe"])

    response = await verify_card(merchant, plan_id=plan["id"], number=INSUFFICIENT_FUNDS, processor="stripe")

    error_of(response, 402, "7303")
    assert "POST /v1/payment_intents" not in stripe_answers.paths  # refused before any money moved
    found = await merchant.get("/v1/subscriptions", params={"userId": "user-1", "clientId": merchant.id})
    assert data_of(found) == []
