"""The Stripe processor against recorded Stripe answers (httpx MockTransport).

These cover what localstripe cannot produce: Stripe's specific decline codes, the Search API
used by `lookup`, idempotency errors, and the exact requests sent in normal (non-localstripe) mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from billing.domain.errors import BillingError
from billing.processors import CardInfo, Outcome, StripeProcessor
from billing.processors.stripe_outcomes import intent_outcome

pytestmark = pytest.mark.anyio

KEY = "sk_test_recorded_answers_abcdef"
TOKEN = "cus_A1:pm_B2"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers each request with the next canned response and keeps what was sent."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)

    def form(self, index: int = 0) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.requests[index].content.decode()).items()}


@pytest.fixture
async def make_processor() -> AsyncIterator[Callable[..., StripeProcessor]]:
    made: list[StripeProcessor] = []

    def make(handler: Handler, **options: Any) -> StripeProcessor:
        processor = StripeProcessor(KEY, transport=httpx.MockTransport(handler), **options)
        made.append(processor)
        return processor

    yield make
    for processor in made:
        await processor.aclose()


def intent(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_123", "object": "payment_intent", "status": status, "metadata": {}, **fields}


def card_error(code: str, decline_code: str | None = None, *, with_intent: bool = True) -> httpx.Response:
    error: dict[str, Any] = {"type": "card_error", "code": code, "message": "Your card was declined."}
    if decline_code:
        error["decline_code"] = decline_code
    if with_intent:
        error["payment_intent"] = intent("requires_payment_method")
    return httpx.Response(402, json={"error": error})


# --- what is sent ----------------------------------------------------------------------------------


async def test_a_charge_is_one_idempotent_off_session_payment_intent(
    make_processor: Callable[..., Any],
) -> None:
    """In Stripe mode the Idempotency-Key header is the guarantee: no list or search before creating."""
    recorder = Recorder(httpx.Response(200, json=intent("succeeded")))
    processor = make_processor(recorder, api_version="2024-06-20")
    outcome = await processor.charge(TOKEN, 1500, "USD", idempotency_key="sub:p1:1", description="Pro")
    assert outcome == Outcome.succeeded("pi_123")

    [sent] = recorder.requests
    assert (sent.method, sent.url.path) == ("POST", "/v1/payment_intents")
    assert sent.url.host == "api.stripe.com"
    assert sent.headers["Idempotency-Key"] == "sub:p1:1"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Stripe-Version"] == "2024-06-20"
    assert recorder.form() == {
        "amount": "1500",
        "currency": "usd",
        "customer": "cus_A1",
        "payment_method": "pm_B2",
        "payment_method_types[0]": "card",
        "confirm": "true",
        "off_session": "true",
        "metadata[idempotency_key]": "sub:p1:1",
        "metadata[operation]": "charge",
        "description": "Pro",
    }


async def test_an_authorization_is_a_manual_capture_intent(make_processor: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json=intent("requires_capture")))
    outcome = await make_processor(recorder).authorize(TOKEN, 100, "EUR", idempotency_key="verify")
    assert outcome == Outcome.succeeded("pi_123")
    form = recorder.form()
    assert (form["capture_method"], form["metadata[operation]"], form["currency"]) == (
        "manual",
        "authorize",
        "eur",
    )
    assert recorder.requests[0].headers["Idempotency-Key"] == "verify"


async def test_tokenize_sends_the_card_to_payment_methods_then_attaches(
    make_processor: Callable[..., Any],
) -> None:
    method = {
        "id": "pm_B2",
        "card": {"brand": "mastercard", "last4": "4444", "exp_month": 3, "exp_year": 2031},
    }
    recorder = Recorder(
        httpx.Response(200, json=method),
        httpx.Response(200, json={"id": "cus_A1"}),
        httpx.Response(200, json={**method, "customer": "cus_A1"}),
    )
    info = CardInfo(number="5555555555554444", exp_month=3, exp_year=31, cvv="321", holder_name="")
    tok = await make_processor(recorder).tokenize(info, customer_ref="user-9")
    assert (tok.token, tok.brand, tok.last4, tok.exp_month, tok.exp_year) == (
        TOKEN,
        "mastercard",
        "4444",
        3,
        2031,
    )
    assert [r.url.path for r in recorder.requests] == [
        "/v1/payment_methods",
        "/v1/customers",
        "/v1/payment_methods/pm_B2/attach",
    ]
    assert recorder.form(0) == {
        "type": "card",
        "card[number]": "5555555555554444",
        "card[exp_month]": "3",
        "card[exp_year]": "2031",
        "card[cvc]": "321",
    }
    assert recorder.form(1) == {"metadata[customer_ref]": "user-9"}
    assert recorder.form(2) == {"customer": "cus_A1"}


# --- Stripe's decline codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "decline_code", "catalog", "hard"),
    [
        ("card_declined", "generic_decline", "7201", False),
        ("card_declined", "insufficient_funds", "7303", False),
        ("expired_card", None, "7202", False),
        ("card_declined", "lost_card", "7203", True),
        ("card_declined", "stolen_card", "7203", True),
        ("card_declined", "pickup_card", "7203", True),
        ("incorrect_number", None, "7204", False),
        ("invalid_number", None, "7204", False),
        ("authentication_required", "authentication_required", "7201", False),
        ("card_declined", "some_new_reason", "7201", False),
    ],
)
async def test_charge_declines_map_to_the_catalog(
    make_processor: Callable[..., Any], code: str, decline_code: str | None, catalog: str, hard: bool
) -> None:
    processor = make_processor(Recorder(card_error(code, decline_code)))
    outcome = await processor.charge(TOKEN, 1500, "USD", idempotency_key="k")
    assert (outcome.status, outcome.decline_code, outcome.hard_decline, outcome.reference) == (
        "failed",
        catalog,
        hard,
        "pi_123",
    )


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        (card_error("incorrect_number", with_intent=False), "INVALID_CARD_DATA"),
        (card_error("invalid_expiry_year", with_intent=False), "INVALID_CARD_DATA"),
        (card_error("card_declined", "insufficient_funds", with_intent=False), "INSUFFICIENT_FUNDS"),
        (httpx.Response(400, json={"error": {"type": "invalid_request_error"}}), "INVALID_CARD_DATA"),
        (httpx.Response(404, json={"error": {"type": "invalid_request_error"}}), "PROCESSOR_ERROR"),
    ],
)
async def test_tokenize_refusals_raise_catalog_errors(
    make_processor: Callable[..., Any], answer: httpx.Response, name: str
) -> None:
    info = CardInfo(number="4242424242424242", exp_month=1, exp_year=2031, cvv="123", holder_name="A")
    with pytest.raises(BillingError) as caught:
        await make_processor(Recorder(answer)).tokenize(info, customer_ref="u")
    assert caught.value.name == name


def key_reused() -> httpx.Response:
    return httpx.Response(400, json={"error": {"type": "idempotency_error", "message": "Keys for ..."}})


async def test_a_charge_under_a_key_used_for_another_request_is_unknown_not_declined(
    make_processor: Callable[..., Any],
) -> None:
    """The key's first request may have moved money: the caller must reconcile with lookup and
    must not move on to a fallback card, which a decline would allow."""
    outcome = await make_processor(Recorder(key_reused())).charge(TOKEN, 1500, "USD", idempotency_key="k")
    assert outcome == Outcome.unknown()


async def test_an_authorization_under_a_key_used_for_another_request_is_refused(
    make_processor: Callable[..., Any],
) -> None:
    with pytest.raises(BillingError) as caught:
        await make_processor(Recorder(key_reused())).authorize(TOKEN, 1500, "USD", idempotency_key="k")
    assert caught.value.name == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (TOKEN, True),
        ("cus_NffrFeUfNV2Hib:pm_1MqLiJLkdIwHu7ixUEgbFdYF", True),
        ("cus_A1", False),
        ("pm_B2", False),
        ("cus_A1:pm_B2:x", False),
        ("cus_A1:pm_B 2", False),
        ("tok_sbx_approve_abcdefgh", False),
        ("4242424242424242", False),
        ("", False),
    ],
)
async def test_is_token_accepts_only_customer_and_payment_method(
    make_processor: Callable[..., Any], token: str, expected: bool
) -> None:
    assert make_processor(Recorder()).is_token(token) is expected


async def test_other_refused_requests_fail_without_blaming_the_card(
    make_processor: Callable[..., Any],
) -> None:
    answer = httpx.Response(
        400, json={"error": {"type": "invalid_request_error", "code": "amount_too_small"}}
    )
    outcome = await make_processor(Recorder(answer)).charge(TOKEN, 10, "USD", idempotency_key="k")
    assert (outcome.status, outcome.decline_code, outcome.hard_decline) == ("failed", "7205", False)
    assert outcome.decline_message is not None
    assert "amount_too_small" in outcome.decline_message


# --- lookup through the Search API -----------------------------------------------------------------


async def test_lookup_searches_payment_intents_by_metadata(make_processor: Callable[..., Any]) -> None:
    found = intent("succeeded", metadata={"idempotency_key": "sub:p1:1"})
    recorder = Recorder(
        httpx.Response(200, json={"object": "search_result", "data": [found], "has_more": False})
    )
    assert await make_processor(recorder).lookup("sub:p1:1") == Outcome.succeeded("pi_123")

    [sent] = recorder.requests
    assert (sent.method, sent.url.path) == ("GET", "/v1/payment_intents/search")
    assert sent.url.params["query"] == "metadata['idempotency_key']:'sub:p1:1'"
    assert sent.url.params.get_list("expand[]") == ["data.latest_charge"]


async def test_lookup_escapes_quotes_in_the_key(make_processor: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json={"data": [], "has_more": False}))
    assert await make_processor(recorder).lookup("it's\\odd") is None
    assert recorder.requests[0].url.params["query"] == "metadata['idempotency_key']:'it\\'s\\\\odd'"


async def test_lookup_prefers_the_intent_that_moved_money(make_processor: Callable[..., Any]) -> None:
    failed = intent("requires_payment_method", id="pi_1", last_payment_error={"code": "card_declined"})
    paid = intent("succeeded", id="pi_2")
    recorder = Recorder(httpx.Response(200, json={"data": [failed, paid], "has_more": False}))
    assert await make_processor(recorder).lookup("k") == Outcome.succeeded("pi_2")


async def test_lookup_that_cannot_search_is_a_processor_error(make_processor: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(400, json={"error": {"type": "invalid_request_error"}}))
    with pytest.raises(BillingError) as caught:
        await make_processor(recorder).lookup("k")
    assert caught.value.name == "PROCESSOR_ERROR"


# --- void ------------------------------------------------------------------------------------------


async def test_void_after_an_earlier_void_is_fine(make_processor: Callable[..., Any]) -> None:
    recorder = Recorder(
        httpx.Response(400, json={"error": {"code": "payment_intent_unexpected_state"}}),
        httpx.Response(200, json=intent("canceled")),
    )
    await make_processor(recorder).void("pi_123")
    assert [r.url.path for r in recorder.requests] == [
        "/v1/payment_intents/pi_123/cancel",
        "/v1/payment_intents/pi_123",
    ]


@pytest.mark.parametrize("reference", ["", "ch_123", "pi_12/../../v1/charges", "auth_sbx_1"])
async def test_void_refuses_what_is_not_a_payment_intent(
    make_processor: Callable[..., Any], reference: str
) -> None:
    recorder = Recorder()
    with pytest.raises(BillingError) as caught:
        await make_processor(recorder).void(reference)
    assert caught.value.name == "PROCESSOR_ERROR"
    assert recorder.requests == []


# --- reading PaymentIntents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment_intent", "expected"),
    [
        (intent("succeeded"), Outcome.succeeded("pi_123")),
        (intent("requires_capture"), Outcome.succeeded("pi_123")),
        (intent("processing"), Outcome.unknown("pi_123")),
        (intent("canceled", latest_charge={"status": "succeeded"}), Outcome.succeeded("pi_123")),
        (
            intent(
                "requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": "lost_card"},
            ),
            Outcome.declined("CARD_REPORTED_LOST_OR_STOLEN", reference="pi_123", hard=True),
        ),
        (
            intent(
                "canceled", latest_charge={"status": "failed"}, last_payment_error={"code": "expired_card"}
            ),
            Outcome.declined("CARD_EXPIRED", reference="pi_123"),
        ),
    ],
)
def test_payment_intent_states_read_as_outcomes(payment_intent: dict[str, Any], expected: Outcome) -> None:
    assert intent_outcome(payment_intent) == expected


def test_an_intent_waiting_for_authentication_is_a_decline() -> None:
    """Off-session charges cannot do 3-D Secure: waiting for it means the charge failed."""
    outcome = intent_outcome(intent("requires_action"))
    assert (outcome.status, outcome.decline_code) == ("failed", "7201")


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", ["pk_test_publishable", "", "sk-live-typo"])
def test_only_secret_or_restricted_keys_are_accepted(bad_key: str) -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        StripeProcessor(bad_key)
    if bad_key:
        assert bad_key not in str(caught.value)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="base_url"):
        StripeProcessor(KEY, base_url="ftp://example.com")
