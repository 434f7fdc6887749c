"""`POST /v1/charges/{chargeId}/refund` and `GET /v1/charges/{chargeId}` through HTTP.

Refunds give money back without ever passing the captured amount (also under concurrent
requests), record the pending refund before the processor hears of it, and settle a lost answer
by its key, never by refunding twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services import refunds
from billing.store.models import Charge, Event, Refund, Subscription
from tests.api.conftest import create_plan, data_of, enrol, error_of

pytestmark = pytest.mark.anyio

REFUNDS_DECLINE = "4000000000005126"
REFUND_ANSWER_LOST = "4000000000007726"


async def enrolled_charge(merchant: Any, *, number: str = "4242424242424242", amount: str = "29.90") -> str:
    """Enrol a cardholder on a plan of `amount`; returns the id of the paid first charge."""
    plan = await create_plan(merchant, amount=amount)
    enrolled = await enrol(merchant, plan["id"], number=number)
    assert enrolled["charge"]["state"] == "succeeded"
    return str(enrolled["charge"]["id"])


async def refund(merchant: Any, charge_id: str, **body: Any) -> Any:
    headers = body.pop("headers", None)
    return await merchant.post(f"/v1/charges/{charge_id}/refund", json=body, headers=headers)


def sandbox_of(runtime: Any) -> SandboxProcessor:
    processor = runtime.processors["sandbox"]
    assert isinstance(processor, SandboxProcessor)
    return processor


def given_back(runtime: Any, charge_reference: str) -> list[tuple[str, int, str]]:
    """(operation, amount, outcome) of every refund or void the sandbox made on a charge."""
    entries = sandbox_of(runtime).ledger.entries.values()  # type: ignore[attr-defined]
    return [
        (e.operation, e.amount_minor, e.outcome.status)
        for e in entries
        if e.target == charge_reference and e.operation in ("refund", "void")
    ]


async def events_of(runtime: Any, kind: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = (await session.exec(select(Event).where(Event.type == kind).order_by(col(Event.id)))).all()
    return [row.payload for row in rows]


async def set_charge_state(runtime: Any, charge_id: str, state: str) -> None:
    async with runtime.sessions() as session, session.begin():
        await session.exec(update(Charge).where(col(Charge.id) == charge_id).values(state=state))


async def test_a_full_refund_before_settlement_is_a_void_and_leaves_the_subscription_alone(
    merchant: Any, runtime: Any
) -> None:
    charge_id = await enrolled_charge(merchant)

    result = data_of(await refund(merchant, charge_id, reason="duplicate order"), 201)

    made = result["refund"]
    assert (made["state"], made["method"], Decimal(str(made["amount"]))) == (
        "succeeded",
        "void",
        Decimal("29.90"),
    )
    assert made["processorReference"].startswith("vd_sbx_")
    assert made["reason"] == "duplicate order"
    charge = result["charge"]
    assert Decimal(str(charge["refundedAmount"])) == Decimal("29.90")
    assert Decimal(str(charge["refundableAmount"])) == 0
    assert [r["id"] for r in charge["refunds"]] == [made["id"]]
    assert given_back(runtime, charge["processorReference"]) == [("void", 2990, "succeeded")]
    refunded = await events_of(runtime, "charge.refunded")
    assert [(e["refundId"], e["amountMinor"], e["refundedAmountMinor"]) for e in refunded] == [
        (made["id"], 2990, 2990)
    ]
    async with runtime.sessions() as session:
        subscription = await session.get(Subscription, charge["subscriptionId"])
    assert subscription is not None
    assert (subscription.status, subscription.renewal_status) == ("active", "current")
    # Nothing is left to give back.
    error_of(await refund(merchant, charge_id), 409, "7061", "amount")


async def test_partial_refunds_add_up_to_the_exact_total_and_one_cent_more_is_refused(
    merchant: Any, runtime: Any
) -> None:
    charge_id = await enrolled_charge(merchant)
    error_of(await refund(merchant, charge_id, amount="29.91"), 409, "7061", "amount")

    for amount in ("10.00", "10", "9.89"):
        made = data_of(await refund(merchant, charge_id, amount=amount), 201)["refund"]
        assert (made["state"], made["method"]) == ("succeeded", "refund")
    error_of(await refund(merchant, charge_id, amount="0.02"), 409, "7061", "amount")
    last = data_of(await refund(merchant, charge_id, amount="0.01"), 201)
    error_of(await refund(merchant, charge_id, amount="0.01"), 409, "7061", "amount")

    charge = last["charge"]
    assert Decimal(str(charge["refundedAmount"])) == Decimal("29.90")
    assert [Decimal(str(r["amount"])) for r in charge["refunds"]] == [
        Decimal("10.00"),
        Decimal("10.00"),
        Decimal("9.89"),
        Decimal("0.01"),
    ]
    reference = charge["processorReference"]
    assert sum(amount for _, amount, state in given_back(runtime, reference) if state == "succeeded") == 2990
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert detail["refunds"] == charge["refunds"]
    history = data_of(
        await merchant.get(
            "/v1/subscriptions/payment-history", params={"subscriptionId": charge["subscriptionId"]}
        )
    )
    assert [(c["id"], Decimal(str(c["refundedAmount"])), len(c["refunds"])) for c in history] == [
        (charge_id, Decimal("29.90"), 4)
    ]


async def test_bad_amounts_and_charges_that_cannot_be_refunded_answer_catalog_errors(
    merchant: Any, merchant_factory: Any, runtime: Any
) -> None:
    charge_id = await enrolled_charge(merchant)
    error_of(await refund(merchant, charge_id, amount="1.001"), 400, "7002", "amount")
    error_of(await refund(merchant, charge_id, amount=0), 400, "7001", "amount")
    assert (await refund(merchant, charge_id, amount="-1")).status_code == 400
    assert (await refund(merchant, charge_id, amount="ten")).status_code == 400

    other = await merchant_factory(name="Other")
    theirs = await refund(other, charge_id, amount="1")
    missing = await refund(other, "chg_01JZZZZZZZZZZZZZZZZZZZZZZZ", amount="1")
    assert error_of(theirs, 404, "7044") == error_of(missing, 404, "7044")
    error_of(await other.get(f"/v1/charges/{charge_id}"), 404, "7044")

    for state in ("pending", "unknown", "failed"):
        await set_charge_state(runtime, charge_id, state)
        error_of(await refund(merchant, charge_id, amount="1"), 409, "7060", "chargeId")
    async with runtime.sessions() as session:
        assert (await session.exec(select(Refund))).all() == []


async def test_after_settlement_the_whole_amount_is_refunded_not_voided(merchant: Any, runtime: Any) -> None:
    charge_id = await enrolled_charge(merchant)
    await set_charge_state(runtime, charge_id, "settled")

    made = data_of(await refund(merchant, charge_id), 201)["refund"]

    assert (made["state"], made["method"], made["processorReference"][:7]) == (
        "succeeded",
        "refund",
        "re_sbx_",
    )


async def test_the_same_idempotency_key_refunds_once(merchant: Any, runtime: Any) -> None:
    charge_id = await enrolled_charge(merchant)
    headers = {"Idempotency-Key": "refund-order-7"}

    first = await refund(merchant, charge_id, amount="5.00", headers=headers)
    again = await refund(merchant, charge_id, amount="5.00", headers=headers)

    assert again.headers.get("Idempotent-Replayed") == "true"
    assert data_of(again, 201)["refund"]["id"] == data_of(first, 201)["refund"]["id"]
    reference = data_of(first, 201)["charge"]["processorReference"]
    assert given_back(runtime, reference) == [("refund", 500, "succeeded")]


async def test_a_refused_refund_fails_and_its_amount_is_refundable_again(merchant: Any, runtime: Any) -> None:
    charge_id = await enrolled_charge(merchant, number=REFUNDS_DECLINE)

    result = data_of(await refund(merchant, charge_id, amount="5.00"), 201)

    made = result["refund"]
    assert (made["state"], made["failureCode"]) == ("failed", "7062")
    assert Decimal(str(result["charge"]["refundedAmount"])) == 0
    assert Decimal(str(result["charge"]["refundableAmount"])) == Decimal("29.90")
    failed = await events_of(runtime, "charge.refund_failed")
    assert [(e["refundId"], e["failureCode"]) for e in failed] == [(made["id"], "7062")]
    assert await events_of(runtime, "charge.refunded") == []


async def test_a_lost_answer_is_unknown_until_the_worker_reconciles_it_by_its_key(
    merchant: Any, runtime: Any
) -> None:
    charge_id = await enrolled_charge(merchant, number=REFUND_ANSWER_LOST)

    made = data_of(await refund(merchant, charge_id, amount="7.50"), 201)["refund"]
    assert made["state"] == "unknown"
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert (detail["refunds"][0]["state"], Decimal(str(detail["refundableAmount"]))) == (
        "unknown",
        Decimal("22.40"),
    )

    # Too fresh: the request that made it may still be waiting for its answer.
    assert await refunds.run_refund_reconciliation(runtime, "test") == {
        "succeeded": 0,
        "failed": 0,
        "unresolved": 0,
    }
    runtime.clock.advance(timedelta(minutes=2))
    assert await refunds.run_refund_reconciliation(runtime, "test") == {
        "succeeded": 1,
        "failed": 0,
        "unresolved": 0,
    }

    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert detail["refunds"][0]["state"] == "succeeded"
    assert Decimal(str(detail["refundedAmount"])) == Decimal("7.50")
    assert given_back(runtime, detail["processorReference"]) == [("refund", 750, "succeeded")]
    assert [e["refundId"] for e in await events_of(runtime, "charge.refunded")] == [made["id"]]


async def test_two_workers_reconciling_at_once_take_a_refund_once(merchant: Any, runtime: Any) -> None:
    charge_id = await enrolled_charge(merchant, number=REFUND_ANSWER_LOST)
    data_of(await refund(merchant, charge_id, amount="7.50"), 201)
    runtime.clock.advance(timedelta(minutes=2))
    sandbox = runtime.processors["sandbox"]
    looked_up: list[str] = []
    original = sandbox.lookup_refund

    async def counting(reference: str, key: str) -> Any:
        looked_up.append(key)
        await asyncio.sleep(0.05)  # both passes have read the stale row before either answers
        return await original(reference, key)

    sandbox.lookup_refund = counting
    first, second = await asyncio.gather(
        refunds.run_refund_reconciliation(runtime, "w1"), refunds.run_refund_reconciliation(runtime, "w2")
    )
    assert first["succeeded"] + second["succeeded"] == 1
    assert len(looked_up) == 1  # the other worker found it taken and left it alone
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert given_back(runtime, detail["processorReference"]) == [("refund", 750, "succeeded")]


class Killed(BaseException):
    """The process dies here: nothing after this line of the request runs."""


class DiesAroundTheCall:
    """The sandbox, but the process dies just before (or just after) the refund reaches it."""

    def __init__(self, sandbox: SandboxProcessor, *, after: bool) -> None:
        self.sandbox = sandbox
        self.after = after

    async def refund(self, *args: Any, **kwargs: Any) -> Outcome:
        if self.after:
            await self.sandbox.refund(*args, **kwargs)
        raise Killed

    async def void_charge(self, *args: Any, **kwargs: Any) -> Outcome | None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sandbox, name)


@pytest.mark.parametrize("after", [False, True], ids=["before-the-call", "after-the-call"])
async def test_a_request_killed_around_the_processor_call_refunds_exactly_once(
    merchant: Any, runtime: Any, after: bool
) -> None:
    charge_id = await enrolled_charge(merchant)
    sandbox = sandbox_of(runtime)
    runtime.processors["sandbox"] = DiesAroundTheCall(sandbox, after=after)
    try:
        with pytest.raises(Killed):
            await refunds.refund_charge(
                runtime, client_id=merchant.id, charge_id=charge_id, amount=Decimal("4.00"), request_key="k-1"
            )
    finally:
        runtime.processors["sandbox"] = sandbox
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert [r["state"] for r in detail["refunds"]] == ["pending"]
    reference = detail["processorReference"]
    assert len(given_back(runtime, reference)) == (1 if after else 0)

    # The merchant retries with the same Idempotency-Key: the same refund is resumed by its key.
    retried = data_of(
        await refund(merchant, charge_id, amount="4.00", headers={"Idempotency-Key": "k-1"}), 201
    )
    assert retried["refund"]["id"] == detail["refunds"][0]["id"]
    assert retried["refund"]["state"] == "succeeded"
    # And the worker, later, finds nothing left to do.
    runtime.clock.advance(timedelta(minutes=2))
    assert (await refunds.run_refund_reconciliation(runtime, "test"))["succeeded"] == 0
    assert given_back(runtime, reference) == [("refund", 400, "succeeded")]
    assert Decimal(str(retried["charge"]["refundedAmount"])) == Decimal("4.00")


async def test_a_refund_left_pending_by_a_dead_process_is_sent_once_by_the_worker(
    merchant: Any, runtime: Any
) -> None:
    charge_id = await enrolled_charge(merchant)
    sandbox = sandbox_of(runtime)
    runtime.processors["sandbox"] = DiesAroundTheCall(sandbox, after=False)
    try:
        with pytest.raises(Killed):
            await refunds.refund_charge(runtime, client_id=merchant.id, charge_id=charge_id)
    finally:
        runtime.processors["sandbox"] = sandbox
    runtime.clock.advance(timedelta(minutes=2))

    assert (await refunds.run_refund_reconciliation(runtime, "test"))["succeeded"] == 1
    assert (await refunds.run_refund_reconciliation(runtime, "test"))["succeeded"] == 0

    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    # It was meant as a void; the sandbox never heard of the key, so the very same void was sent.
    assert [(r["state"], r["method"]) for r in detail["refunds"]] == [("succeeded", "void")]
    assert given_back(runtime, detail["processorReference"]) == [("void", 2990, "succeeded")]


async def test_concurrent_partial_refunds_never_give_back_more_than_the_charge(
    concurrent_merchant_factory: Any, app: Any
) -> None:
    merchant = await concurrent_merchant_factory(name="Busy")
    runtime = app.state.runtime
    charge_id = await enrolled_charge(merchant)

    answers = await asyncio.gather(*(refund(merchant, charge_id, amount="5.00") for _ in range(8)))

    made = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(made) == 5
    for answer in refused:
        error_of(answer, 409, "7061", "amount")
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert Decimal(str(detail["refundedAmount"])) == Decimal("25.00")
    assert Decimal(str(detail["refundableAmount"])) == Decimal("4.90")
    assert sum(amount for _, amount, _ in given_back(runtime, detail["processorReference"])) == 2500


def test_the_worker_runs_the_refund_reconciliation_pass() -> None:
    from billing.worker import registered_passes

    assert dict(registered_passes())["refund-reconciliation"] is refunds.run_refund_reconciliation


async def test_a_request_key_names_one_refund_for_good(merchant: Any, runtime: Any) -> None:
    """Past the 24 hours of the API's replay, the key still finds its refund: never a second one."""
    from billing.domain.errors import BillingError

    first_charge = await enrolled_charge(merchant)
    other_charge = await enrolled_charge(merchant)
    made = await refunds.refund_charge(
        runtime, client_id=merchant.id, charge_id=first_charge, amount=Decimal("3.00"), request_key="k-9"
    )

    again = await refunds.refund_charge(
        runtime, client_id=merchant.id, charge_id=first_charge, amount=Decimal("4.00"), request_key="k-9"
    )
    with pytest.raises(BillingError) as caught:
        await refunds.refund_charge(
            runtime, client_id=merchant.id, charge_id=other_charge, amount=Decimal("1.00"), request_key="k-9"
        )

    assert (again.refund.id, again.refund.amount_minor, again.view.refunded_minor) == (
        made.refund.id,
        300,
        300,
    )
    assert caught.value.code == "7700"
