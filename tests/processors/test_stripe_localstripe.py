"""The Stripe processor against a real (fake) Stripe server: localstripe on loopback.

localstripe's card behaviour differs from Stripe's test mode in ways these tests pin down, so a
change in localstripe shows up here rather than as a puzzling failure elsewhere:
- it declines 4000000000000002, ...9995, ...0069 and ...0119 when the card is attached, always
  with the generic `card_declined` (no insufficient_funds / expired_card codes);
- it declines 4000000000000341 on every charge attempt, manual-capture authorizations included;
- it does not know 4100000000000019 (stolen) and approves it;
- it ignores the Idempotency-Key header and has no Search API.
Stripe-specific codes and the Search API are covered with recorded answers in test_stripe_answers.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing.domain.errors import BillingError
from billing.processors import CardInfo, Outcome, PaymentProcessor, StripeProcessor

pytestmark = pytest.mark.anyio


def card(number: str, *, cvv: str = "123") -> CardInfo:
    return CardInfo(number=number, exp_month=12, exp_year=2030, cvv=cvv, holder_name="Ada Lovelace")


def intents_tagged(admin: httpx.Client, key: str) -> list[dict[str, Any]]:
    page = admin.get("/v1/payment_intents", params={"limit": 100}).json()
    assert not page["has_more"]
    return [i for i in page["data"] if i["metadata"].get("idempotency_key") == key]


async def test_tokenize_creates_a_customer_and_attaches_the_card(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="user-42")
    customer_id, _, method_id = tok.token.partition(":")
    assert customer_id.startswith("cus_")
    assert method_id.startswith("pm_")
    assert (tok.brand, tok.last4, tok.exp_month, tok.exp_year) == ("visa", "4242", 12, 2030)
    assert "4242424242424242" not in tok.token

    customer = localstripe_admin.get(f"/v1/customers/{customer_id}").json()
    assert customer["metadata"] == {"customer_ref": "user-42"}
    method = localstripe_admin.get(f"/v1/payment_methods/{method_id}").json()
    assert method["customer"] == customer_id
    assert method["billing_details"] == {"name": "Ada Lovelace"}


async def test_authorize_holds_the_amount_and_void_releases_it(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    auth = await stripe_processor.authorize(tok.token, 100, "USD", idempotency_key="verify-1")
    assert auth.status == "succeeded"
    assert auth.reference is not None
    assert auth.reference.startswith("pi_")

    intent = localstripe_admin.get(f"/v1/payment_intents/{auth.reference}").json()
    assert (intent["status"], intent["capture_method"], intent["amount"], intent["currency"]) == (
        "requires_capture",
        "manual",
        100,
        "usd",
    )
    assert intent["metadata"] == {"idempotency_key": "verify-1", "operation": "authorize"}

    await stripe_processor.void(auth.reference)
    assert localstripe_admin.get(f"/v1/payment_intents/{auth.reference}").json()["status"] == "canceled"
    await stripe_processor.void(auth.reference)  # voiding again is a no-op, not an error

    # The authorization did succeed; voiding it later does not rewrite that answer.
    assert await stripe_processor.lookup("verify-1") == Outcome.succeeded(auth.reference)


async def test_charge_moves_the_money(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    outcome = await stripe_processor.charge(
        tok.token, 1500, "USD", idempotency_key="sub-1:2026-11-01:1", description="Pro plan, November"
    )
    assert outcome.status == "succeeded"
    assert outcome.reference is not None

    intent = localstripe_admin.get(f"/v1/payment_intents/{outcome.reference}").json()
    assert (intent["status"], intent["amount"], intent["capture_method"]) == (
        "succeeded",
        1500,
        "automatic_async",
    )
    assert intent["metadata"] == {
        "idempotency_key": "sub-1:2026-11-01:1",
        "operation": "charge",
        "description": "Pro plan, November",
    }
    assert await stripe_processor.lookup("sub-1:2026-11-01:1") == outcome


async def test_same_key_twice_charges_once(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    first = await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="batch-9:0")
    second = await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="batch-9:0")
    assert first == second
    assert first.status == "succeeded"

    customer_id = tok.token.partition(":")[0]
    charges = localstripe_admin.get("/v1/charges", params={"customer": customer_id}).json()["data"]
    assert len(charges) == 1
    assert len(intents_tagged(localstripe_admin, "batch-9:0")) == 1


@pytest.mark.parametrize(("amount", "description"), [(9900, "Pro: period 1"), (1500, "Pro Plus: period 1")])
async def test_same_key_for_another_charge_is_unknown_and_charges_nothing(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client, amount: int, description: str
) -> None:
    """As Stripe does, a key sent again with other parameters (the description included) is
    not run; it is reported `unknown`, never as a decline, and lookup tells what the key did."""
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    key = f"k-{amount}-{description}"
    first = await stripe_processor.charge(
        tok.token, 1500, "USD", idempotency_key=key, description="Pro: period 1"
    )

    again = await stripe_processor.charge(
        tok.token, amount, "USD", idempotency_key=key, description=description
    )

    assert again == Outcome.unknown()
    assert await stripe_processor.lookup(key) == first
    assert len(intents_tagged(localstripe_admin, key)) == 1


async def test_same_key_for_another_authorization_is_refused(stripe_processor: StripeProcessor) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    await stripe_processor.authorize(tok.token, 1500, "USD", idempotency_key="auth-k")
    with pytest.raises(BillingError) as caught:
        await stripe_processor.authorize(tok.token, 9900, "USD", idempotency_key="auth-k")
    assert caught.value.name == "IDEMPOTENCY_KEY_REUSED"


async def test_localstripe_ignores_the_idempotency_key_header(localstripe_admin: httpx.Client) -> None:
    """Why localstripe mode looks for an existing PaymentIntent before creating one.

    If localstripe starts honouring the header, this fails and the pre-check can go.
    """
    body = {"amount": "100", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}
    first = localstripe_admin.post("/v1/payment_intents", data=body, headers={"Idempotency-Key": "same"})
    second = localstripe_admin.post("/v1/payment_intents", data=body, headers={"Idempotency-Key": "same"})
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] != second.json()["id"]


async def test_lookup_of_a_key_stripe_never_saw_is_none(stripe_processor: StripeProcessor) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="seen")
    assert await stripe_processor.lookup("never-sent") is None


@pytest.mark.parametrize(
    "number", ["4000000000000002", "4000000000009995", "4000000000000069", "4000000000000119"]
)
async def test_cards_localstripe_refuses_at_attach_are_declined_at_tokenize(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client, number: str
) -> None:
    with pytest.raises(BillingError) as caught:
        await stripe_processor.tokenize(card(number), customer_ref="u")
    assert (caught.value.name, caught.value.code) == ("CARD_DECLINED", "7201")
    assert number not in str(caught.value)
    # The customer created for the refused card is removed again.
    assert localstripe_admin.get("/v1/customers").json()["data"] == []


async def test_card_that_attaches_but_every_charge_declines(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    tok = await stripe_processor.tokenize(card("4000000000000341"), customer_ref="u")

    auth = await stripe_processor.authorize(tok.token, 100, "USD", idempotency_key="verify")
    assert (auth.status, auth.decline_code) == ("failed", "7201")

    charged = await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="sub:p1:1")
    assert (charged.status, charged.decline_code, charged.hard_decline) == ("failed", "7201", False)

    # The declined attempt exists at Stripe, so lookup can report it.
    [intent] = intents_tagged(localstripe_admin, "sub:p1:1")
    assert await stripe_processor.lookup("sub:p1:1") == Outcome.declined(
        "CARD_DECLINED", reference=intent["id"]
    )
    # Replaying the key returns that decline and creates nothing new.
    assert (
        await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="sub:p1:1")
    ).decline_code == "7201"
    assert len(intents_tagged(localstripe_admin, "sub:p1:1")) == 1


async def test_localstripe_does_not_know_the_stolen_card(stripe_processor: StripeProcessor) -> None:
    """4100000000000019 is approved by localstripe; the stolen mapping is tested with recorded answers."""
    tok = await stripe_processor.tokenize(card("4100000000000019"), customer_ref="u")
    assert (await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="k")).status == "succeeded"


async def test_card_data_stripe_cannot_parse_is_invalid_card_data(stripe_processor: StripeProcessor) -> None:
    # Luhn-valid, so it passes the local check; localstripe only takes 16-digit numbers.
    with pytest.raises(BillingError) as caught:
        await stripe_processor.tokenize(card("378282246310005", cvv="123"), customer_ref="u")
    assert caught.value.name == "INVALID_CARD_DATA"


async def test_luhn_invalid_numbers_never_reach_stripe(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    with pytest.raises(BillingError) as caught:
        await stripe_processor.tokenize(card("4242424242424241"), customer_ref="u")
    assert caught.value.name == "INVALID_CARD_DATA"
    assert localstripe_admin.get("/v1/customers").json()["data"] == []


async def test_a_token_whose_objects_are_gone_is_card_not_found(stripe_processor: StripeProcessor) -> None:
    outcome = await stripe_processor.charge("cus_gone:pm_gone", 1500, "USD", idempotency_key="k")
    assert (outcome.status, outcome.decline_code, outcome.hard_decline) == ("failed", "7200", True)


async def test_void_of_a_captured_charge_is_a_state_conflict(stripe_processor: StripeProcessor) -> None:
    tok = await stripe_processor.tokenize(card("4242424242424242"), customer_ref="u")
    charged = await stripe_processor.charge(tok.token, 1500, "USD", idempotency_key="k")
    assert charged.reference is not None
    with pytest.raises(BillingError) as caught:
        await stripe_processor.void(charged.reference)
    assert caught.value.name == "STATE_CONFLICT"


async def test_stripe_satisfies_the_protocol(stripe_processor: StripeProcessor) -> None:
    assert isinstance(stripe_processor, PaymentProcessor)
    assert stripe_processor.slug == "stripe"
