"""verify-card over HTTP: enrolment with the sandbox test cards, renewal dates in the client's
time zone for every plan type, and every way a verify-card call can be wrong."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.api.conftest import (
    CHARGES_DECLINE,
    DROP,
    GOOD_CARD,
    INSUFFICIENT_FUNDS,
    PROCESSING_ERROR,
    card,
    create_plan,
    create_transaction,
    data_of,
    enrol,
    error_of,
    verify_card,
)
from tests.clock import FixedClock

pytestmark = pytest.mark.anyio


async def _history(merchant: Any, subscription_id: str) -> list[dict[str, Any]]:
    response = await merchant.get(
        "/v1/subscriptions/payment-history", params={"subscriptionId": subscription_id}
    )
    history: list[dict[str, Any]] = data_of(response)
    return history


async def _subscriptions_of(merchant: Any, user: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data_of(
        await merchant.get("/v1/subscriptions", params={"userId": user, "clientId": merchant.id})
    )
    return found


async def test_the_good_card_enrols_an_active_subscription_with_one_succeeded_charge(merchant: Any) -> None:
    plan = await create_plan(merchant, amount=29.9)

    result = await enrol(
        merchant, plan["id"], user="ada", notificationEmail="ada@example.com", alias="work card"
    )

    subscription = result["subscription"]
    assert (subscription["status"], subscription["renewalStatus"], subscription["cyclesPaid"]) == (
        "active",
        "current",
        1,
    )
    assert (subscription["planUid"], subscription["userId"], subscription["trxUid"]) == (
        plan["id"],
        "ada",
        result["transactionUid"],
    )
    assert subscription["notificationEmail"] == "ada@example.com"
    method = result["paymentMethod"]
    assert (method["brand"], method["last4"], method["alias"], method["status"]) == (
        "visa",
        "4242",
        "work card",
        "active",
    )
    assert subscription["defaultPaymentMethodId"] == method["id"]
    [charge] = await _history(merchant, subscription["id"])
    assert (charge["kind"], charge["state"], charge["amount"], charge["id"]) == (
        "enrolment",
        "succeeded",
        29.9,
        result["charge"]["id"],
    )
    assert data_of(await merchant.get(f"/v1/subscriptions/detail/{subscription['id']}")) == subscription


async def test_insufficient_funds_answers_7303_and_creates_no_subscription(merchant: Any) -> None:
    plan = await create_plan(merchant)

    response = await verify_card(merchant, plan_id=plan["id"], number=INSUFFICIENT_FUNDS, user="bob")

    error_of(response, 402, "7303")
    assert await _subscriptions_of(merchant, "bob") == []


async def test_a_card_that_verifies_but_declines_its_first_charge_creates_no_subscription(
    merchant: Any,
) -> None:
    plan = await create_plan(merchant)

    response = await verify_card(merchant, plan_id=plan["id"], number=CHARGES_DECLINE, user="carol")

    error_of(response, 402, "7201")
    assert await _subscriptions_of(merchant, "carol") == []


async def test_a_first_charge_whose_answer_was_lost_is_looked_up_not_repeated(
    merchant: Any, runtime: Any
) -> None:
    """Card ...0119 loses the answer to its first charge; the lookup by key finds it succeeded."""
    plan = await create_plan(merchant)

    result = await enrol(merchant, plan["id"], number=PROCESSING_ERROR)

    assert result["subscription"]["status"] == "active"
    ledger = runtime.processors["sandbox"].ledger.entries
    charges = [e for e in ledger.values() if e.operation == "charge"]
    assert [e.idempotency_key for e in charges] == [f"enrol:{result['transactionUid']}:1"]


async def test_a_trial_starts_the_subscription_without_a_charge(merchant: Any) -> None:
    plan = await create_plan(merchant, trialDays=14)

    result = await enrol(merchant, plan["id"])

    subscription = result["subscription"]
    assert result["charge"] is None
    assert await _history(merchant, subscription["id"]) == []
    assert (subscription["status"], subscription["cyclesPaid"]) == ("active", 0)
    # Enrolled at 06:00 local on Jan 15: 14 x 24 h end at 06:00 on Jan 29, so the trial ends at the
    # following midnight, never earlier.
    assert subscription["trialEndsAt"] == subscription["nextRenewalDate"] == "2026-01-30T00:00:00-06:00"


async def test_verify_without_a_plan_saves_the_card_only(merchant: Any) -> None:
    result = data_of(await verify_card(merchant, plan_id=None, user="dan"))

    assert result["subscription"] is None
    assert result["charge"] is None
    assert result["paymentMethod"]["last4"] == "4242"
    assert await _subscriptions_of(merchant, "dan") == []


GUATEMALA = "America/Guatemala"  # UTC-6, no DST
NEW_YORK = "America/New_York"  # EST/EDT


@pytest.mark.parametrize(
    ("zone", "now", "plan", "next_renewal"),
    [
        (
            GUATEMALA,
            "2026-01-15T12:00Z",
            {"type": "interval", "frequency": {"frequency": 30}},
            "2026-02-14T00:00:00-06:00",
        ),
        (
            GUATEMALA,
            "2026-01-15T12:00Z",
            {"type": "fixedDay", "frequency": {"day": 1}},
            "2026-02-01T00:00:00-06:00",
        ),
        (
            GUATEMALA,
            "2026-01-15T12:00Z",
            {"type": "fixedDay", "frequency": {"day": 31}},
            "2026-01-31T00:00:00-06:00",
        ),
        (
            GUATEMALA,
            "2026-01-15T12:00Z",
            {"type": "fixedDay", "frequency": {"day": 15}},
            "2026-02-15T00:00:00-06:00",
        ),
        (
            GUATEMALA,
            "2026-01-15T12:00Z",
            {"type": "anniversary", "frequency": {"frequency": 12}},
            "2027-01-15T00:00:00-06:00",
        ),
        # Jan 31 anniversary: February has no 31st, so the first renewal is Feb 28 (and March 31 after it).
        (
            GUATEMALA,
            "2026-01-31T18:00Z",
            {"type": "anniversary", "frequency": DROP},
            "2026-02-28T00:00:00-06:00",
        ),
        (
            GUATEMALA,
            "2026-01-31T18:00Z",
            {"type": "anniversary", "frequency": {"frequency": 3}},
            "2026-04-30T00:00:00-06:00",
        ),
        # 03:00 UTC on Jan 16 is still Jan 15 in Guatemala: the local date anchors the schedule.
        (
            GUATEMALA,
            "2026-01-16T03:00Z",
            {"type": "interval", "frequency": {"frequency": 30}},
            "2026-02-14T00:00:00-06:00",
        ),
        # New York: enrolled in winter time (UTC-5), renews after the March change at local midnight (UTC-4).
        (
            NEW_YORK,
            "2026-03-01T17:00Z",
            {"type": "interval", "frequency": {"frequency": 30}},
            "2026-03-31T00:00:00-04:00",
        ),
        (
            NEW_YORK,
            "2026-01-31T17:00Z",
            {"type": "anniversary", "frequency": DROP},
            "2026-02-28T00:00:00-05:00",
        ),
        (
            NEW_YORK,
            "2026-10-15T16:00Z",
            {"type": "anniversary", "frequency": DROP},
            "2026-11-15T00:00:00-05:00",
        ),
        # Six days before the plan's day is less than the default minimum first period (half a month):
        # the first period runs on to the following boundary. With a minimum of 0 it ends on the 8th.
        (
            NEW_YORK,
            "2026-03-02T05:30Z",
            {"type": "fixedDay", "frequency": {"day": 8}},
            "2026-04-08T00:00:00-04:00",
        ),
        (
            NEW_YORK,
            "2026-03-02T05:30Z",
            {"type": "fixedDay", "frequency": {"day": 8}, "minimumFirstPeriodDays": 0},
            "2026-03-08T00:00:00-05:00",
        ),
        # 23:58 on a daily plan: not charged again two minutes later at midnight, but the midnight after.
        (
            GUATEMALA,
            "2026-01-16T05:58Z",
            {"type": "interval", "frequency": {"frequency": 1}},
            "2026-01-17T00:00:00-06:00",
        ),
    ],
)
async def test_next_renewal_date_for_each_plan_type_in_the_clients_zone(
    merchant_factory: Any, clock: FixedClock, zone: str, now: str, plan: dict[str, Any], next_renewal: str
) -> None:
    clock.set(datetime.fromisoformat(now).astimezone(UTC))
    merchant = await merchant_factory(name="Zoned", timezone=zone)
    created = await create_plan(merchant, **plan)

    subscription = (await enrol(merchant, created["id"]))["subscription"]

    assert subscription["nextRenewalDate"] == next_renewal
    assert subscription["currentPeriodEnd"] == next_renewal
    assert subscription["timezone"] == zone


async def test_uid_and_transaction_uid_are_the_same_field(merchant: Any) -> None:
    plan = await create_plan(merchant)
    trx = await create_transaction(merchant)
    body = {
        "processor": "sandbox",
        "cardInfo": card(),
        "shouldCreateSubscription": True,
        "planUid": plan["id"],
    }

    result = data_of(
        await merchant.post("/v1/subscriptions/verify-card", json={**body, "transactionUid": trx["uid"]})
    )
    assert result["transactionUid"] == trx["uid"]
    both = {**body, "uid": trx["uid"], "transactionUid": "trx_other"}
    error_of(await merchant.post("/v1/subscriptions/verify-card", json=both), 400, "7000", "uid")
    error_of(await merchant.post("/v1/subscriptions/verify-card", json=body), 400, "7000", "uid")


async def test_a_used_transaction_cannot_enrol_twice(merchant: Any) -> None:
    plan = await create_plan(merchant)
    trx = await create_transaction(merchant)
    body = {
        "uid": trx["uid"],
        "processor": "sandbox",
        "cardInfo": card(),
        "shouldCreateSubscription": True,
        "planUid": plan["id"],
    }

    data_of(await merchant.post("/v1/subscriptions/verify-card", json=body))
    error_of(await merchant.post("/v1/subscriptions/verify-card", json=body), 409, "7052", "uid")


def _body(trx: str = "@TRX", plan: str | None = "@PLAN", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"uid": trx, "processor": "sandbox", "cardInfo": card(GOOD_CARD)}
    if plan is not None:
        body.update(shouldCreateSubscription=True, planUid=plan)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (_body(trx="trx_missing"), 404, "7042", "uid"),
        (_body(processor="fac-2"), 404, "7005", "processor"),
        (_body(processor=None), 400, "7000", "processor"),
        (_body(plan="pln_missing"), 404, "7040", "planUid"),
        (_body(plan=None, shouldCreateSubscription=True), 400, "7000", "planUid"),
        (_body(shouldCreateSubscription="true"), 400, "7000", "shouldCreateSubscription"),
        (_body(userId="someone-else"), 400, "7000", "userId"),
        (_body(cardInfo=None), 400, "7000", "cardInfo"),
        (_body(cardInfo={**card(), "expMonth": "12"}), 400, "7000", "cardInfo.expMonth"),
        (_body(cardInfo={**card(), "number": None}), 400, "7000", "cardInfo.number"),
        (_body(cardInfo=card("4242424242424241")), 400, "7204", "cardInfo.number"),
        (_body(cardInfo={**card(), "expYear": 2020}), 402, "7202", "cardInfo.expYear"),
        # Out-of-range or look-alike input is refused before any processor call (never a 500).
        (_body(cardInfo=card("424242424242424\u00b2")), 400, "7204", "cardInfo.number"),
        (_body(cardInfo={**card(), "cvv": "12\u00b3"}), 400, "7204", "cardInfo.cvv"),
        (_body(cardInfo={**card(), "expYear": 2**40}), 400, "7000", "cardInfo.expYear"),
        (_body(cardInfo={**card(), "expYear": 3000000000}), 400, "7000", "cardInfo.expYear"),
        (_body(cardInfo={**card(), "expYear": -1}), 400, "7000", "cardInfo.expYear"),
        (_body(cardInfo={**card(), "expYear": 9999}), 400, "7204", "cardInfo.expYear"),
        (_body(cardInfo={**card(), "expMonth": 13}), 400, "7000", "cardInfo.expMonth"),
        (_body(cardInfo={**card(), "expMonth": -(2**40)}), 400, "7000", "cardInfo.expMonth"),
        (_body(notificationEmail="not-an-email"), 400, "7000", "notificationEmail"),
        (_body(clientId="cli_other"), 403, "7605", "clientId"),
        (_body(client="cli_other"), 403, "7605", "client"),
    ],
)
async def test_bad_verify_card_calls(
    merchant: Any, runtime: Any, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    plan = await create_plan(merchant)
    trx = await create_transaction(merchant)
    body = {k: (trx["uid"] if v == "@TRX" else plan["id"] if v == "@PLAN" else v) for k, v in body.items()}

    error_of(await merchant.post("/v1/subscriptions/verify-card", json=body), status, code, field)
    # Refused before the processor heard of it: nothing authorized, voided or charged.
    assert len(runtime.processors["sandbox"].ledger) == 0
    # Nothing was enrolled and the transaction is still usable.
    assert await _subscriptions_of(merchant, "user-1") == []
    data_of(await merchant.post("/v1/subscriptions/verify-card", json=_body(trx=trx["uid"], plan=plan["id"])))


async def test_a_plan_in_another_currency_than_the_transaction_is_refused(merchant: Any) -> None:
    plan = await create_plan(merchant, currency="GTQ")

    error_of(await verify_card(merchant, plan_id=plan["id"], currency="USD"), 400, "7000", "planUid")


async def test_another_clients_transaction_and_plan_are_not_found(
    merchant: Any, merchant_factory: Any
) -> None:
    other = await merchant_factory(name="Other")
    their_plan = await create_plan(other)
    their_trx = await create_transaction(other)
    my_plan = await create_plan(merchant)
    my_trx = await create_transaction(merchant)

    response = await merchant.post(
        "/v1/subscriptions/verify-card", json=_body(trx=their_trx["uid"], plan=my_plan["id"])
    )
    error_of(response, 404, "7042")
    response = await merchant.post(
        "/v1/subscriptions/verify-card", json=_body(trx=my_trx["uid"], plan=their_plan["id"])
    )
    error_of(response, 404, "7040")


async def test_racing_verify_cards_on_one_transaction_enrol_once(merchant: Any) -> None:
    plan = await create_plan(merchant)
    trx = await create_transaction(merchant, user="race")
    body = _body(trx=trx["uid"], plan=plan["id"])

    responses = await asyncio.gather(
        *(merchant.post("/v1/subscriptions/verify-card", json=body) for _ in range(3))
    )

    assert sorted(r.status_code for r in responses) == [200, 409, 409]
    assert {r.json()["errors"][0]["code"] for r in responses if r.status_code == 409} <= {"7050", "7052"}
    assert len(await _subscriptions_of(merchant, "race")) == 1
