"""Sandbox refunds and voids: the ledger keeps them by key, and test cards refuse or lose them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.domain.errors import BillingError
from billing.processors import InMemorySandboxLedger, SandboxProcessor
from billing.processors.base import CardInfo
from tests.clock import FixedClock

pytestmark = pytest.mark.anyio

CLOCK = FixedClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
REFUNDS_DECLINE = "4000000000005126"
REFUND_ANSWER_LOST = "4000000000007726"


@pytest.fixture
def ledger() -> InMemorySandboxLedger:
    return InMemorySandboxLedger()


@pytest.fixture
def sandbox(ledger: InMemorySandboxLedger) -> SandboxProcessor:
    return SandboxProcessor(ledger, clock=CLOCK)


async def charged(sandbox: SandboxProcessor, number: str = "4242424242424242", amount: int = 2990) -> str:
    card = CardInfo(number=number, exp_month=12, exp_year=2030, cvv="123", holder_name="Ada")
    token = (await sandbox.tokenize(card, customer_ref="u")).token
    outcome = await sandbox.charge(token, amount, "USD", idempotency_key=f"charge-{number}")
    assert outcome.status == "succeeded"
    assert outcome.reference is not None
    return outcome.reference


async def test_refunds_are_kept_by_key_and_a_repeat_refunds_nothing(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    reference = await charged(sandbox)

    first = await sandbox.refund(reference, 1000, "USD", idempotency_key="r1", reason="dup")
    again = await sandbox.refund(reference, 1000, "USD", idempotency_key="r1", reason="dup")
    other = await sandbox.refund(reference, 500, "USD", idempotency_key="r1")

    assert first == again
    assert (first.status, (first.reference or "")[:7]) == ("succeeded", "re_sbx_")
    assert (other.status, other.decline_code) == ("failed", "7700")  # the engine reads it as unknown
    assert [(e.operation, e.amount_minor, e.target) for e in ledger.entries.values() if e.target] == [
        ("refund", 1000, reference)
    ]
    assert await sandbox.lookup_refund(reference, "r1") == first
    assert await sandbox.lookup_refund("ch_sbx_other", "r1") is None
    assert await sandbox.lookup_refund(reference, "never") is None


async def test_a_void_releases_the_whole_charge_and_nothing_can_be_refunded_after_it(
    sandbox: SandboxProcessor,
) -> None:
    reference = await charged(sandbox)

    partial = await sandbox.void_charge(reference, 1000, "USD", idempotency_key="v0")
    voided = await sandbox.void_charge(reference, 2990, "USD", idempotency_key="v1")
    after = await sandbox.refund(reference, 100, "USD", idempotency_key="r1")

    assert partial is not None
    assert (partial.status, partial.decline_code) == ("failed", "7062")
    assert voided is not None
    assert (voided.status, (voided.reference or "")[:7]) == ("succeeded", "vd_sbx_")
    assert (after.status, after.decline_code) == ("failed", "7062")


async def test_refunds_of_unknown_or_failed_charges_and_over_the_amount_are_refused(
    sandbox: SandboxProcessor,
) -> None:
    reference = await charged(sandbox)
    assert (await sandbox.refund("ch_sbx_nothing", 100, "USD", idempotency_key="a")).decline_code == "7062"
    assert (await sandbox.refund(reference, 2991, "USD", idempotency_key="b")).decline_code == "7062"
    assert (await sandbox.refund(reference, 100, "EUR", idempotency_key="c")).decline_code == "7062"
    with pytest.raises(BillingError, match="7001"):
        await sandbox.refund(reference, 0, "USD", idempotency_key="d")


async def test_the_refund_refusing_card(sandbox: SandboxProcessor) -> None:
    reference = await charged(sandbox, REFUNDS_DECLINE)

    refused = await sandbox.refund(reference, 100, "USD", idempotency_key="r1")
    void = await sandbox.void_charge(reference, 2990, "USD", idempotency_key="v1")

    assert (refused.status, refused.decline_code) == ("failed", "7062")
    assert void is not None
    assert void.status == "failed"


async def test_the_card_whose_refund_answers_are_lost_first(
    sandbox: SandboxProcessor, ledger: InMemorySandboxLedger
) -> None:
    reference = await charged(sandbox, REFUND_ANSWER_LOST)

    lost = await sandbox.refund(reference, 700, "USD", idempotency_key="r1")
    found = await sandbox.lookup_refund(reference, "r1")
    resent = await sandbox.refund(reference, 700, "USD", idempotency_key="r1")

    assert lost.status == "unknown"
    assert found is not None
    assert found.status == "succeeded"
    assert resent == found
    assert len([e for e in ledger.entries.values() if e.operation == "refund"]) == 1
