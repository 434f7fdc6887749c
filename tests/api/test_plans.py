"""Plans over HTTP: every route's happy path and its bad inputs, with the exact catalog codes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import DROP, create_plan, data_of, error_of, plan_body, raw

pytestmark = pytest.mark.anyio


async def test_create_plan_answers_the_plan_with_its_amount_as_an_exact_number(merchant: Any) -> None:
    response = await merchant.post(
        "/v1/plans",
        json=plan_body(
            amount=29.9,
            methods=["sandbox"],
            installments=[1],
            dailyAttempts=3,
            intervalAttempt=12,
            graceDays=5,
            gracePolicy="patient",
            daysNotifyExpiringCard=7,
            cycles=12,
        ),
    )

    plan = data_of(response, 201)
    assert plan["id"].startswith("pln_")
    assert plan["clientId"] == merchant.id
    assert '"amount":29.90' in response.text  # a JSON number with the currency's two decimals
    assert (plan["currency"], plan["type"], plan["frequency"]["frequency"]) == ("USD", "interval", 30)
    assert (plan["methods"], plan["dailyAttempts"], plan["intervalAttempt"], plan["graceDays"]) == (
        ["sandbox"],
        3,
        12.0,
        5,
    )
    assert (plan["gracePolicy"], plan["cycles"], plan["autoRenewal"], plan["trialDays"]) == (
        "patient",
        12,
        True,
        0,
    )


@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        (Decimal("500"), "JPY", '"amount":500,'),
        (Decimal("1.25"), "KWD", '"amount":1.250,'),
        (10, "usd", '"amount":10.00,'),
    ],
)
async def test_amounts_keep_the_precision_of_their_currency(
    merchant: Any, amount: Decimal, currency: str, wire: str
) -> None:
    response = await merchant.post("/v1/plans", content=raw(plan_body(amount=amount, currency=currency)))

    data_of(response, 201)
    assert wire in response.text
    assert response.json()["data"]["currency"] == currency.upper()


async def test_fixed_day_and_anniversary_plans_store_only_their_own_schedule_field(merchant: Any) -> None:
    fixed = await create_plan(merchant, type="fixedDay", frequency={"frequency": 0, "day": 15})
    yearly = await create_plan(merchant, type="anniversary", frequency={"day": 3, "frequency": 12})
    monthly = await create_plan(merchant, type="anniversary", frequency=DROP)

    assert (fixed["frequency"]["frequency"], fixed["frequency"]["day"]) == (None, 15)
    assert (yearly["frequency"]["frequency"], yearly["frequency"]["day"]) == (12, None)
    assert monthly["frequency"]["frequency"] == 1  # anniversary plans default to monthly


async def test_auto_renewal_false_means_one_cycle(merchant: Any) -> None:
    plan = await create_plan(merchant, autoRenewal=False)

    assert (plan["autoRenewal"], plan["cycles"]) == (False, 1)


@pytest.mark.parametrize(("sent", "currency", "shown"), [("29.90", "USD", "29.90"), ("500", "JPY", "500")])
async def test_an_amount_sent_as_a_decimal_string_is_kept_exact(
    merchant: Any, sent: str, currency: str, shown: str
) -> None:
    """Generated clients send money as decimal strings; the answer is the same JSON number."""
    response = await merchant.post("/v1/plans", json=plan_body(amount=sent, currency=currency))

    assert Decimal(str(data_of(response, 201)["amount"])) == Decimal(shown)
    assert f'"amount":{shown},' in response.text


BAD_PLANS: list[tuple[dict[str, Any], int, str, str | None]] = [
    ({"name": DROP}, 400, "7000", "plan.name"),
    ({"name": "   "}, 400, "7000", "plan.name"),
    ({"amount": DROP}, 400, "7000", "plan.amount"),
    ({"amount": "29.90 USD"}, 400, "7000", "plan.amount"),
    ({"amount": "1e3"}, 400, "7000", "plan.amount"),
    ({"amount": True}, 400, "7000", "plan.amount"),
    ({"amount": 0}, 400, "7001", "plan.amount"),
    ({"amount": -5}, 400, "7001", "plan.amount"),
    ({"amount": Decimal("10.001")}, 400, "7002", "plan.amount"),
    ({"amount": Decimal("10.5"), "currency": "JPY"}, 400, "7002", "plan.amount"),
    ({"currency": "XYZ"}, 400, "7016", "plan.currency"),
    ({"currency": DROP}, 400, "7000", "plan.currency"),
    ({"type": DROP}, 400, "7000", "plan.type"),
    ({"type": "automatic"}, 400, "7000", "plan.type"),
    ({"type": "weekly"}, 400, "7000", "plan.type"),
    ({"type": "fixedDay", "frequency": {"frequency": 0}}, 400, "7000", "plan.frequency.day"),
    ({"type": "fixedDay", "frequency": {"day": 32}}, 400, "7000", "plan.frequency.day"),
    ({"type": "fixedDay", "frequency": {"day": 0}}, 400, "7000", "plan.frequency.day"),
    ({"frequency": {"day": 1}}, 400, "7000", "plan.frequency.frequency"),
    ({"frequency": {"frequency": 0}}, 400, "7000", "plan.frequency.frequency"),
    ({"frequency": {"frequency": "30"}}, 400, "7000", "plan.frequency.frequency"),
    ({"frequency": {"frequency": Decimal("30.5")}}, 400, "7000", "plan.frequency.frequency"),
    ({"type": "anniversary", "frequency": {"frequency": 0}}, 400, "7000", "plan.frequency.frequency"),
    ({"methods": ["fac-2"]}, 404, "7005", "plan.methods"),
    ({"methods": "sandbox"}, 400, "7000", "plan.methods"),
    ({"dailyAttempts": 0}, 400, "7000", "plan.dailyAttempts"),
    ({"dailyAttempts": "3"}, 400, "7000", "plan.dailyAttempts"),
    ({"dailyAttempts": 101}, 400, "7000", "plan.dailyAttempts"),
    ({"intervalAttempt": 0}, 400, "7000", "plan.intervalAttempt"),
    ({"intervalAttempt": 10_000}, 400, "7000", "plan.intervalAttempt"),
    ({"graceDays": -1}, 400, "7000", "plan.graceDays"),
    ({"gracePolicy": "nope"}, 400, "7000", "plan.gracePolicy"),
    ({"autoRenewal": "yes"}, 400, "7000", "plan.autoRenewal"),
    ({"autoRenewal": False, "cycles": 3}, 400, "7000", "plan.cycles"),
    ({"cycles": 0}, 400, "7000", "plan.cycles"),
    ({"trialDays": -1}, 400, "7000", "plan.trialDays"),
    ({"daysNotifyExpiringCard": 400}, 400, "7000", "plan.daysNotifyExpiringCard"),
    ({"minimumFirstPeriodDays": -1}, 400, "7000", "plan.minimumFirstPeriodDays"),
    ({"minimumFirstPeriodDays": "2"}, 400, "7000", "plan.minimumFirstPeriodDays"),
    # At most half the shortest period: 15 days for a 30-day plan, half a day for a daily one.
    ({"minimumFirstPeriodDays": 16}, 400, "7000", "plan.minimumFirstPeriodDays"),
    (
        {"frequency": {"frequency": 1}, "minimumFirstPeriodDays": Decimal("0.75")},
        400,
        "7000",
        "plan.minimumFirstPeriodDays",
    ),
]


async def test_the_minimum_first_period_is_kept_and_null_means_half_a_period(merchant: Any) -> None:
    daily = await create_plan(merchant, frequency={"frequency": 1}, minimumFirstPeriodDays=0.25)
    assert daily["minimumFirstPeriodDays"] == 0.25
    monthly = await create_plan(merchant, type="anniversary", frequency=DROP)
    assert monthly["minimumFirstPeriodDays"] is None
    updated = data_of(
        await merchant.put(
            "/v1/plans", json={"planId": daily["id"], "plan": {"minimumFirstPeriodDays": None}}
        )
    )
    assert updated["minimumFirstPeriodDays"] is None


@pytest.mark.parametrize(("fields", "status", "code", "field"), BAD_PLANS)
async def test_a_bad_plan_is_refused_with_its_catalog_code_and_field(
    merchant: Any, fields: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    response = await merchant.post("/v1/plans", content=raw(plan_body(**fields)))

    error_of(response, status, code, field)


async def test_a_body_without_plan_or_that_is_not_json_is_7000(merchant: Any) -> None:
    error_of(await merchant.post("/v1/plans", json={"client": merchant.id}), 400, "7000", "plan")
    error_of(await merchant.post("/v1/plans", content=b"{not json"), 400, "7000")


async def test_naming_another_client_is_403(merchant: Any) -> None:
    body = {**plan_body(), "client": "cli_someone_else"}

    error_of(await merchant.post("/v1/plans", json=body), 403, "7605", "client")


async def test_plans_need_a_token_and_a_signature(merchant: Any, client: Any) -> None:
    error_of(await client.post("/v1/plans", json=plan_body()), 401, "7600")
    error_of(await merchant.post("/v1/plans", json=plan_body(), sign=False), 401, "7604")


async def test_list_shows_the_clients_own_plans_newest_first(merchant: Any, merchant_factory: Any) -> None:
    other = await merchant_factory(name="Other")
    first = await create_plan(merchant, name="First")
    second = await create_plan(merchant, name="Second")
    await create_plan(other, name="Theirs")

    plans = data_of(await merchant.get("/v1/plans/list"))

    assert [p["id"] for p in plans] == [second["id"], first["id"]]


async def test_detail_by_id_and_client(merchant: Any, merchant_factory: Any) -> None:
    plan = await create_plan(merchant)
    other = await merchant_factory(name="Other")
    theirs = await create_plan(other)

    found = data_of(await merchant.get(f"/v1/plans/{plan['id']}/client/{merchant.id}/detail"))
    assert found == plan
    error_of(await merchant.get(f"/v1/plans/pln_missing/client/{merchant.id}/detail"), 404, "7040")
    # Another client's plan is exactly as missing as a plan that does not exist.
    error_of(await merchant.get(f"/v1/plans/{theirs['id']}/client/{merchant.id}/detail"), 404, "7040")
    error_of(await merchant.get(f"/v1/plans/{plan['id']}/client/{other.id}/detail"), 403, "7605")


async def test_update_changes_only_what_is_sent(merchant: Any) -> None:
    plan = await create_plan(merchant, gracePolicy="patient")

    response = await merchant.put(
        "/v1/plans",
        json={
            "planId": plan["id"],
            "plan": {"amount": 35, "name": "Pro+", "gracePolicy": None},
            "client": merchant.id,
        },
    )

    updated = data_of(response)
    assert '"amount":35.00' in response.text
    assert (updated["name"], updated["gracePolicy"], updated["frequency"]) == (
        "Pro+",
        None,
        plan["frequency"],
    )
    again = data_of(await merchant.get(f"/v1/plans/{plan['id']}/client/{merchant.id}/detail"))
    assert again == updated


async def test_update_accepts_the_whole_plan_back_but_never_a_new_schedule(merchant: Any) -> None:
    plan = await create_plan(merchant)
    whole = plan_body(amount=31)["plan"]

    data_of(await merchant.put("/v1/plans", json={"planUid": plan["id"], "plan": whole}))
    for change, field in [
        ({"type": "anniversary"}, "plan.type"),
        ({"currency": "EUR"}, "plan.currency"),
        ({"frequency": {"frequency": 7}}, "plan.frequency.frequency"),
    ]:
        response = await merchant.put("/v1/plans", json={"planId": plan["id"], "plan": change})
        error_of(response, 400, "7000", field)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"plan": {"amount": 1}}, 400, "7000", "planId"),
        ({"planId": "pln_missing", "plan": {"amount": 1}}, 404, "7040", "planId"),
        ({"planId": "@PLAN", "plan": {"amount": Decimal("1.001")}}, 400, "7002", "plan.amount"),
        ({"planId": "@PLAN", "plan": {"amount": None}}, 400, "7000", "plan.amount"),
        ({"planId": "@PLAN", "plan": {"methods": ["nope"]}}, 404, "7005", "plan.methods"),
        ({"planId": "@PLAN", "plan": {"amount": 1}, "client": "cli_other"}, 403, "7605", "client"),
    ],
)
async def test_bad_updates(merchant: Any, body: dict[str, Any], status: int, code: str, field: str) -> None:
    plan = await create_plan(merchant)
    if body.get("planId") == "@PLAN":
        body = {**body, "planId": plan["id"]}

    error_of(await merchant.put("/v1/plans", content=raw(body)), status, code, field)


async def test_another_clients_plan_cannot_be_updated(merchant: Any, merchant_factory: Any) -> None:
    other = await merchant_factory(name="Other")
    theirs = await create_plan(other)

    error_of(
        await merchant.put("/v1/plans", json={"planId": theirs["id"], "plan": {"amount": 1}}), 404, "7040"
    )


async def test_listing_with_another_clients_id_is_403(merchant: Any) -> None:
    data_of(await merchant.get("/v1/plans/list", params={"client": merchant.id}))
    error_of(await merchant.get("/v1/plans/list", params={"clientId": "cli_other"}), 403, "7605", "clientId")
