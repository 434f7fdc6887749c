"""The sandbox processor: every test card, the ledger, scenario overrides, card checks."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.card_numbers import may_hold_card_number
from billing.domain.errors import BillingError
from billing.processors import (
    TEST_CARDS,
    CardInfo,
    InMemorySandboxLedger,
    Outcome,
    PaymentProcessor,
    SandboxProcessor,
    SandboxScenario,
)
from billing.processors.cards import luhn_valid
from billing.processors.http_sandbox import HttpSandboxProcessor
from tests.clock import FixedClock

pytestmark = pytest.mark.anyio

CLOCK = FixedClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))


def card(number: str, *, exp_month: int = 12, exp_year: int = 2030, cvv: str = "123") -> CardInfo:
    return CardInfo(
        number=number, exp_month=exp_month, exp_year=exp_year, cvv=cvv, holder_name="Ada Lovelace"
    )


@pytest.fixture
def ledger() -> InMemorySandboxLedger:
    return InMemorySandboxLedger()


@pytest.fixture
def sandbox(ledger: InMemorySandboxLedger) -> SandboxProcessor:
    return SandboxProcessor(ledger, clock=CLOCK)


async def token_for(sandbox: SandboxProcessor, number: str) -> str:
    return (await sandbox.tokenize(card(number), customer_ref="user-1")).token


def with_luhn_digit(body: str) -> str:
    """Append the check digit that makes `body` Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


# --- the test cards -------------------------------------------------------------------------------

# number -> (authorize outcome, charge outcome) as (status, catalog code, hard decline)
EXPECTED = {
    "4242424242424242": (("succeeded", None, False), ("succeeded", None, False)),
    "4000000000000002": (("failed", "7201", False), ("failed", "7201", False)),
    "4000000000009995": (("failed", "7303", False), ("failed", "7303", False)),
    "4000000000000069": (("failed", "7202", False), ("failed", "7202", False)),
    "4000000000000341": (("succeeded", None, False), ("failed", "7201", False)),
    "4000000000000119": (("succeeded", None, False), ("unknown", None, False)),
    "4100000000000019": (("failed", "7203", True), ("failed", "7203", True)),
    # Charges succeed; their refunds are refused or lose their first answer (test_sandbox_refunds.py).
    "4000000000005126": (("succeeded", None, False), ("succeeded", None, False)),
    "4000000000007726": (("succeeded", None, False), ("succeeded", None, False)),
}


def test_every_test_card_has_an_expectation() -> None:
    """Adding a test card without saying what it does should fail here."""
    assert set(EXPECTED) == set(TEST_CARDS)


@pytest.mark.parametrize("number", sorted(EXPECTED))
async def test_test_card_tokenizes_and_answers_as_documented(sandbox: SandboxProcessor, number: str) -> None:
    """Declines happen at authorize/charge, never at tokenize: verification is what catches them."""
    tok = await sandbox.tokenize(card(number), customer_ref="user-1")
    assert tok.last4 == number[-4:]
    assert tok.brand == "visa"
    assert (tok.exp_month, tok.exp_year) == (12, 2030)
    assert number not in tok.token
    assert tok.token.startswith(f"tok_sbx_{TEST_CARDS[number].value}_")

    expected_auth, expected_charge = EXPECTED[number]
    auth = await sandbox.authorize(tok.token, 100, "USD", idempotency_key=f"auth-{number}")
    charged = await sandbox.charge(tok.token, 1500, "USD", idempotency_key=f"charge-{number}")
    assert (auth.status, auth.decline_code, auth.hard_decline) == expected_auth
    assert (charged.status, charged.decline_code, charged.hard_decline) == expected_charge


async def test_approved_card_authorize_void_charge(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    auth = await sandbox.authorize(tok, 100, "USD", idempotency_key="verify-1")
    assert auth.status == "succeeded"
    assert auth.reference is not None
    assert auth.reference.startswith("auth_sbx_")
    await sandbox.void(auth.reference)
    assert ledger.entries["verify-1"].voided

    charged = await sandbox.charge(
        tok, 1500, "USD", idempotency_key="sub-1:2026-11:1", description="Pro plan"
    )
    assert charged == Outcome.succeeded(charged.reference or "")
    assert charged.reference is not None
    assert charged.reference.startswith("ch_sbx_")
    entry = ledger.entries["sub-1:2026-11:1"]
    assert (entry.operation, entry.amount_minor, entry.currency, entry.description) == (
        "charge",
        1500,
        "USD",
        "Pro plan",
    )


async def test_declines_carry_catalog_messages(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4000000000009995")
    outcome = await sandbox.charge(tok, 1500, "USD", idempotency_key="k")
    assert outcome.decline_message == "The account does not have enough balance."
    assert outcome.reference is not None  # a declined attempt is still a record at the processor


async def test_verifies_then_every_charge_declines(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4000000000000341")
    assert (await sandbox.authorize(tok, 100, "USD", idempotency_key="verify")).status == "succeeded"
    for attempt in range(3):
        outcome = await sandbox.charge(tok, 1500, "USD", idempotency_key=f"sub:p1:{attempt}")
        assert (outcome.status, outcome.decline_code, outcome.hard_decline) == ("failed", "7201", False)


async def test_processing_error_answers_unknown_then_lookup_finds_the_money_moved(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    tok = await token_for(sandbox, "4000000000000119")
    first = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    assert first == Outcome.unknown()

    found = await sandbox.lookup("sub:p1:1")
    assert found is not None
    assert found.status == "succeeded"
    assert found.reference == ledger.entries["sub:p1:1"].outcome.reference

    # Replaying the same key returns the true outcome and charges nothing new.
    again = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    assert again == found
    assert len(ledger) == 1

    # Every new charge on this card loses its first answer again.
    assert (await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p2:1")).status == "unknown"


async def test_stolen_card_is_a_hard_decline(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4100000000000019")
    outcome = await sandbox.charge(tok, 1500, "USD", idempotency_key="k")
    assert outcome.hard_decline
    assert outcome.decline_code == "7203"


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("4012888888881881", "visa"),
        ("3056930009020004", "unknown"),
    ],
)
async def test_any_other_luhn_valid_number_approves(
    sandbox: SandboxProcessor, number: str, brand: str
) -> None:
    tok = await sandbox.tokenize(card(number, cvv="1234" if brand == "amex" else "123"), customer_ref="u")
    assert tok.brand == brand
    assert tok.token.startswith("tok_sbx_approve_")
    assert (await sandbox.charge(tok.token, 1500, "USD", idempotency_key="k")).status == "succeeded"


@given(body=st.from_regex(r"[1-9][0-9]{14}", fullmatch=True))
def test_property_unlisted_valid_numbers_tokenize_as_approving(body: str) -> None:
    number = with_luhn_digit(body)
    sandbox = SandboxProcessor(clock=CLOCK)
    tok = anyio.run(lambda: sandbox.tokenize(card(number), customer_ref="u"))
    expected = TEST_CARDS.get(number, SandboxScenario.APPROVE)
    assert sandbox.scenario_of(tok.token) is expected
    assert number not in tok.token


# --- card checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_card", "field"),
    [
        (card("4242424242424241"), "number"),  # Luhn fails
        (card("4242 4242 4242 4242"), "number"),
        (card("42424242"), "number"),
        (card("4242424242424242", exp_month=13), "expMonth"),
        (card("4242424242424242", exp_month=0), "expMonth"),
        (card("4242424242424242", cvv="12"), "cvv"),
        (card("4242424242424242", cvv="12a"), "cvv"),
        # str.isdigit() accepts these; int() of them fails. They are not card data.
        (card("424242424242424\u00b2"), "number"),
        (
            card(
                "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662"
            ),
            "number",
        ),
        (card("4242424242424242", cvv="12\u00b3"), "cvv"),
        # Years that overflow a database integer, or that no card carries.
        (card("4242424242424242", exp_year=2**40), "expYear"),
        (card("4242424242424242", exp_year=2026 + 51), "expYear"),
        (card("4242424242424242", exp_year=-1), "expYear"),
    ],
)
async def test_bad_card_data_is_invalid_card_data(
    sandbox: SandboxProcessor, bad_card: CardInfo, field: str
) -> None:
    with pytest.raises(BillingError) as caught:
        await sandbox.tokenize(bad_card, customer_ref="u")
    assert (caught.value.name, caught.value.code, caught.value.field) == ("INVALID_CARD_DATA", "7204", field)
    assert bad_card.number not in str(caught.value)


async def test_past_expiry_is_card_expired_but_the_current_month_is_still_good(
    sandbox: SandboxProcessor,
) -> None:
    with pytest.raises(BillingError) as caught:
        await sandbox.tokenize(card("4242424242424242", exp_month=10, exp_year=2026), customer_ref="u")
    assert caught.value.code == "7202"

    this_month = await sandbox.tokenize(
        card("4242424242424242", exp_month=11, exp_year=2026), customer_ref="u"
    )
    assert this_month.exp_year == 2026


async def test_two_digit_years_mean_this_century(sandbox: SandboxProcessor) -> None:
    tok = await sandbox.tokenize(card("4242424242424242", exp_year=30), customer_ref="u")
    assert tok.exp_year == 2030
    with pytest.raises(BillingError, match="7202"):
        await sandbox.tokenize(card("4242424242424242", exp_year=25), customer_ref="u")


async def test_expiry_years_up_to_fifty_years_ahead_are_accepted(sandbox: SandboxProcessor) -> None:
    tok = await sandbox.tokenize(card("4242424242424242", exp_year=2026 + 50), customer_ref="u")
    assert tok.exp_year == 2076


@given(
    body=st.from_regex(r"[1-9][0-9]{14}", fullmatch=True), cvv=st.from_regex(r"[0-9]{3,4}", fullmatch=True)
)
def test_property_card_repr_never_shows_the_number_or_cvv(body: str, cvv: str) -> None:
    info = CardInfo(
        number=with_luhn_digit(body), exp_month=1, exp_year=2031, cvv=cvv, holder_name="Grace Hopper"
    )
    for text in (repr(info), str(info), f"{info}", repr([info])):
        assert info.number not in text
        assert info.number[:12] not in text
        assert f"'{cvv}'" not in text
        assert "Grace" not in text
        assert info.number[-4:] in text


# --- the ledger ------------------------------------------------------------------------------------


async def test_same_key_returns_the_stored_outcome_and_charges_once(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    first = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    second = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    assert first == second
    assert list(ledger.entries) == ["sub:p1:1"]

    third = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:2")
    assert third.reference != first.reference
    assert len(ledger) == 2


async def test_concurrent_requests_with_one_key_record_one_charge(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    outcomes: list[Outcome] = []

    async def charge_once() -> None:
        outcomes.append(await sandbox.charge(tok, 1500, "USD", idempotency_key="batch-7:0"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(charge_once)
    assert len({o.reference for o in outcomes}) == 1
    assert len(ledger) == 1


async def test_same_key_for_a_different_request_is_refused(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    await sandbox.charge(tok, 1500, "USD", idempotency_key="k")
    for different in (
        sandbox.charge(tok, 1600, "USD", idempotency_key="k"),
        sandbox.charge(tok, 1500, "EUR", idempotency_key="k"),
        sandbox.authorize(tok, 1500, "USD", idempotency_key="k"),
        sandbox.charge(await token_for(sandbox, "4242424242424242"), 1500, "USD", idempotency_key="k"),
    ):
        with pytest.raises(BillingError) as caught:
            await different
        assert caught.value.name == "IDEMPOTENCY_KEY_REUSED"


async def test_lookup_of_an_unseen_key_is_none(sandbox: SandboxProcessor) -> None:
    assert await sandbox.lookup("never-sent") is None


async def test_lookup_reports_declines_too(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4000000000000002")
    charged = await sandbox.charge(tok, 1500, "USD", idempotency_key="k")
    assert await sandbox.lookup("k") == charged


async def test_a_shared_ledger_makes_two_instances_answer_as_one(ledger: InMemorySandboxLedger) -> None:
    """Two processes plugged into one ledger must not charge a key twice."""
    first_process = SandboxProcessor(ledger, clock=CLOCK)
    second_process = SandboxProcessor(ledger, clock=CLOCK)
    tok = await token_for(first_process, "4000000000000119")

    lost = await first_process.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    assert lost.status == "unknown"
    found = await second_process.lookup("sub:p1:1")
    assert found is not None
    assert found.status == "succeeded"
    assert await second_process.charge(tok, 1500, "USD", idempotency_key="sub:p1:1") == found
    assert len(ledger) == 1


async def test_the_behaviour_travels_with_the_token() -> None:
    """A fresh instance (another process, a restart) treats a token as the one that minted it."""
    minted = await token_for(SandboxProcessor(clock=CLOCK), "4000000000009995")
    elsewhere = SandboxProcessor(clock=CLOCK)
    outcome = await elsewhere.charge(minted, 1500, "USD", idempotency_key="k")
    assert outcome.decline_code == "7303"


# --- changing a card's behaviour later -------------------------------------------------------------


async def test_set_scenario_makes_a_good_card_decline_from_now_on(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    before = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1")
    assert before.status == "succeeded"

    sandbox.set_scenario(tok, SandboxScenario.INSUFFICIENT_FUNDS)
    after = await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p2:1")
    assert (after.status, after.decline_code) == ("failed", "7303")
    # History is not rewritten: the earlier key still answers as it did.
    assert await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p1:1") == before

    sandbox.clear_scenario(tok)
    assert (await sandbox.charge(tok, 1500, "USD", idempotency_key="sub:p2:2")).status == "succeeded"


async def test_overrides_belong_to_one_instance(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    sandbox.set_scenario(tok, SandboxScenario.STOLEN)
    other = SandboxProcessor(clock=CLOCK)
    assert other.scenario_of(tok) is SandboxScenario.APPROVE
    assert sandbox.scenario_of(tok) is SandboxScenario.STOLEN


# --- void and foreign tokens -----------------------------------------------------------------------


async def test_void_twice_is_harmless(sandbox: SandboxProcessor, ledger: InMemorySandboxLedger) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    auth = await sandbox.authorize(tok, 100, "USD", idempotency_key="verify")
    assert auth.reference is not None
    await sandbox.void(auth.reference)
    await sandbox.void(auth.reference)
    assert ledger.entries["verify"].voided


async def test_a_charge_cannot_be_voided(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    charged = await sandbox.charge(tok, 1500, "USD", idempotency_key="k")
    assert charged.reference is not None
    with pytest.raises(BillingError) as caught:
        await sandbox.void(charged.reference)
    assert caught.value.name == "STATE_CONFLICT"


async def test_void_of_an_unknown_reference_is_a_processor_error(sandbox: SandboxProcessor) -> None:
    with pytest.raises(BillingError) as caught:
        await sandbox.void("auth_sbx_nope")
    assert caught.value.name == "PROCESSOR_ERROR"


@pytest.mark.parametrize("foreign", ["cus_1:pm_1", "tok_sbx_", "tok_sbx_teleport_abc", "tok_sbx_approve"])
async def test_a_token_the_sandbox_did_not_mint_never_works(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger, foreign: str
) -> None:
    outcome = await sandbox.charge(foreign, 1500, "USD", idempotency_key="k")
    assert (outcome.status, outcome.decline_code, outcome.hard_decline) == ("failed", "7200", True)
    assert len(ledger) == 0


async def test_amounts_must_be_positive(sandbox: SandboxProcessor) -> None:
    tok = await token_for(sandbox, "4242424242424242")
    with pytest.raises(BillingError, match="7001"):
        await sandbox.charge(tok, 0, "USD", idempotency_key="k")


def test_sandbox_satisfies_the_protocol(sandbox: SandboxProcessor) -> None:
    assert isinstance(sandbox, PaymentProcessor)
    assert sandbox.slug == "sandbox"


# --- token shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", sorted(EXPECTED))
async def test_minted_tokens_have_the_sandbox_shape_and_no_digit_runs(
    sandbox: SandboxProcessor, number: str
) -> None:
    token = await token_for(sandbox, number)
    assert sandbox.is_token(token)
    assert HttpSandboxProcessor("http://127.0.0.1:9").is_token(token)
    assert token.removeprefix(f"tok_sbx_{TEST_CARDS[number].value}_").isalpha()


async def test_minted_tokens_never_hold_a_card_number(sandbox: SandboxProcessor) -> None:
    """Random hex would hold twelve digits in a row in about one token in a hundred."""
    tokens = [await token_for(sandbox, "4242424242424242") for _ in range(500)]
    assert not any(may_hold_card_number(token) for token in tokens)


@pytest.mark.parametrize(
    "not_a_token",
    [
        "",
        "tok_x",
        "cus_A1:pm_B2",
        "tok_sbx_",
        "tok_sbx_approve",
        "tok_sbx_teleport_abc",
        "tok_sbx_approve_4242.4242.4242.4242",
        "tok_sbx_approve_4242 4242",
        "tok_sbx_approve_ABC",
        "4242424242424242",
        "pan=4242424242424242",
    ],
)
def test_anything_else_is_not_a_sandbox_token(sandbox: SandboxProcessor, not_a_token: str) -> None:
    assert not sandbox.is_token(not_a_token)
    assert not HttpSandboxProcessor("http://127.0.0.1:9").is_token(not_a_token)
