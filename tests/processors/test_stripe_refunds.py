"""Stripe refunds: `/v1/refunds` against localstripe, and answers localstripe cannot give, recorded.

localstripe keeps refunds (payment_intent, amount, metadata, listing by payment_intent) but
ignores the Idempotency-Key header and never refuses a refund, so the processor looks for the
key's refund before creating one in localstripe mode, and Stripe's own answers (a refused
refund, a refund still `pending`, an idempotency error, no answer) are recorded responses.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from billing.domain.errors import BillingError
from billing.processors import CardInfo, StripeProcessor
from tests.processors.conftest import TEST_KEY

pytestmark = pytest.mark.anyio

CARD = CardInfo(number="4242424242424242", exp_month=12, exp_year=2030, cvv="123", holder_name="Ada")


async def charged(stripe_processor: StripeProcessor, amount: int = 2990) -> str:
    tok = await stripe_processor.tokenize(CARD, customer_ref="u")
    outcome = await stripe_processor.charge(tok.token, amount, "USD", idempotency_key=f"chg-{amount}")
    assert outcome.status == "succeeded"
    assert outcome.reference is not None
    return outcome.reference


def refunds_of(admin: httpx.Client, intent: str) -> list[dict[str, Any]]:
    page = admin.get("/v1/refunds", params={"payment_intent": intent, "limit": 100}).json()
    return [r for r in page["data"]]


async def test_partial_refunds_are_refunds_of_the_payment_intent(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    intent = await charged(stripe_processor)

    first = await stripe_processor.refund(intent, 1000, "USD", idempotency_key="refund:rfd_1", reason="dup")
    second = await stripe_processor.refund(intent, 1990, "USD", idempotency_key="refund:rfd_2")

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert first.reference is not None
    assert first.reference.startswith("re_")
    stored = sorted(refunds_of(localstripe_admin, intent), key=lambda r: r["amount"])
    assert [(r["amount"], r["metadata"]) for r in stored] == [
        (1000, {"idempotency_key": "refund:rfd_1", "reason": "dup"}),
        (1990, {"idempotency_key": "refund:rfd_2"}),
    ]
    assert await stripe_processor.lookup_refund(intent, "refund:rfd_1") == first
    assert await stripe_processor.lookup_refund(intent, "refund:rfd_never") is None


async def test_the_same_key_twice_refunds_once(
    stripe_processor: StripeProcessor, localstripe_admin: httpx.Client
) -> None:
    intent = await charged(stripe_processor)

    first = await stripe_processor.refund(intent, 500, "USD", idempotency_key="refund:rfd_9")
    again = await stripe_processor.refund(intent, 500, "USD", idempotency_key="refund:rfd_9")
    other_amount = await stripe_processor.refund(intent, 700, "USD", idempotency_key="refund:rfd_9")

    assert first == again
    assert other_amount.status == "unknown"  # the key's first request may have moved money
    assert [r["amount"] for r in refunds_of(localstripe_admin, intent)] == [500]


async def test_stripe_cannot_void_a_captured_charge_so_the_engine_refunds(
    stripe_processor: StripeProcessor,
) -> None:
    intent = await charged(stripe_processor)
    assert await stripe_processor.void_charge(intent, 2990, "USD", idempotency_key="refund:rfd_3") is None


def recorded(handler: Any) -> StripeProcessor:
    return StripeProcessor(
        TEST_KEY, base_url="https://api.stripe.test", transport=httpx.MockTransport(handler)
    )


# Refund objects and errors as Stripe answers them (trimmed to the fields the processor reads).
FAILED_REFUND = {
    "id": "re_failed",
    "object": "refund",
    "status": "failed",
    "failure_reason": "expired_or_canceled_card",
}
PENDING_REFUND = {"id": "re_pending", "object": "refund", "status": "pending"}
TOO_MUCH = {
    "error": {
        "type": "invalid_request_error",
        "code": "amount_too_large",
        "message": "Refund amount ($30.00) is greater than unrefunded amount on charge ($29.90)",
    }
}
IDEMPOTENCY_ERROR = {
    "error": {
        "type": "idempotency_error",
        "message": "Keys for idempotent requests can only be used with the same parameters they were first used with.",
    }
}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, FAILED_REFUND, ("failed", "7062", "re_failed")),
        (200, PENDING_REFUND, ("unknown", None, "re_pending")),
        (400, TOO_MUCH, ("failed", "7062", None)),
        (400, IDEMPOTENCY_ERROR, ("unknown", None, None)),
        (500, {"error": {"type": "api_error"}}, ("unknown", None, None)),
        (429, {"error": {"type": "rate_limit_error"}}, ("unknown", None, None)),
    ],
    ids=[
        "refund-failed",
        "refund-pending",
        "amount-too-large",
        "idempotency-error",
        "server-error",
        "throttled",
    ],
)
async def test_recorded_refund_answers(status: int, body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json=body)

    processor = recorded(handler)
    try:
        outcome = await processor.refund("pi_123", 3000, "USD", idempotency_key="refund:rfd_7", reason="dup")
    finally:
        await processor.aclose()

    assert (outcome.status, outcome.decline_code, outcome.reference) == expected
    assert [(r.method, r.url.path, r.headers["Idempotency-Key"]) for r in sent] == [
        ("POST", "/v1/refunds", "refund:rfd_7")
    ]
    form = dict(httpx.QueryParams(sent[0].content.decode()))
    assert form == {
        "payment_intent": "pi_123",
        "amount": "3000",
        "metadata[idempotency_key]": "refund:rfd_7",
        "metadata[reason]": "dup",
    }


async def test_no_answer_at_all_is_unknown_and_a_lookup_without_answer_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("lost", request=request)

    processor = recorded(handler)
    try:
        assert (await processor.refund("pi_123", 100, "USD", idempotency_key="k")).status == "unknown"
        with pytest.raises(BillingError) as caught:
            await processor.lookup_refund("pi_123", "k")
        assert caught.value.name == "PROCESSOR_ERROR"
    finally:
        await processor.aclose()


async def test_lookup_reads_the_payment_intents_refunds_page_by_page() -> None:
    pages = {
        None: {
            "data": [{"id": "re_a", "status": "succeeded", "metadata": {"idempotency_key": "other"}}],
            "has_more": True,
        },
        "re_a": {
            "data": [{"id": "re_b", "status": "succeeded", "metadata": {"idempotency_key": "k"}}],
            "has_more": False,
        },
    }
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        return httpx.Response(200, content=json.dumps(pages[params.get("starting_after")]).encode())

    processor = recorded(handler)
    try:
        found = await processor.lookup_refund("pi_123", "k")
    finally:
        await processor.aclose()
    assert found is not None
    assert (found.status, found.reference) == ("succeeded", "re_b")
    assert [p["payment_intent"] for p in seen] == ["pi_123", "pi_123"]
