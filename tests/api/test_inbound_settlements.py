"""`POST /webhooks/settlements`: succeeded charges become `settled`; every other row is answered per
row, kept for the operator (`billing settlements mismatches`) and never applied."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from billing.cli import cli
from billing.store.ids import new_id
from tests.api.conftest import create_plan, data_of, enrol, error_of
from tests.api.inbound_helpers import (
    SETTLEMENTS_SECRET,
    HeldSandbox,
    all_events,
    charges_of,
    events_about,
    inbound_settings,
    post_signed,
    signed_headers,
)
from tests.conftest import test_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(db_url, tmp_path, **inbound_settings())


@pytest.fixture
async def app(settings: Any, clock: Any) -> AsyncIterator[Any]:
    from api.app import create_app

    return create_app(settings, clock=clock, processors={"sandbox": HeldSandbox(clock=clock)})


async def _succeeded_charges(merchant: Any, runtime: Any, n: int) -> list[Any]:
    plan = await create_plan(merchant, amount=29.9)
    ids = [(await enrol(merchant, plan["id"], user=f"user-{i}"))["charge"]["id"] for i in range(n)]
    return [c for c in await charges_of(runtime) if c.id in ids]


async def test_good_mismatched_and_unknown_rows(
    client: Any, merchant: Any, runtime: Any, clock: Any, db_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    good, by_reference, wrong_amount, wrong_currency = await _succeeded_charges(merchant, runtime, 4)
    report = {
        "eventId": "stl_2026_01_16",
        "settlementDate": "2026-01-16",
        "charges": [
            {"chargeId": good.id, "amount": "29.90", "currency": "USD"},
            {"processorReference": by_reference.processor_reference, "amount": 29.9, "currency": "USD"},
            {"chargeId": wrong_amount.id, "amount": "29.00", "currency": "USD"},
            {"chargeId": wrong_currency.id, "amount": "29.90", "currency": "EUR"},
            {"chargeId": new_id("charge"), "amount": "1.00", "currency": "USD"},
            {"processorReference": "ch_sbx_nobody", "amount": "1.00", "currency": "USD"},
        ],
    }
    answer = data_of(
        await post_signed(client, "/webhooks/settlements", report, secret=SETTLEMENTS_SECRET, at=clock.now())
    )
    assert (answer["settled"], answer["refused"], answer["duplicate"]) == (2, 4, False)
    assert [(r["index"], r["status"], r["code"]) for r in answer["rows"]] == [
        (0, "settled", None),
        (1, "settled", None),
        (2, "refused", "7072"),
        (3, "refused", "7073"),
        (4, "refused", "7044"),
        (5, "refused", "7044"),
    ]
    states = {c.id: c.state for c in await charges_of(runtime)}
    assert states[good.id] == states[by_reference.id] == "settled"
    assert states[wrong_amount.id] == states[wrong_currency.id] == "succeeded"

    events = await all_events(merchant)
    [settled] = events_about(events, "charge.settled", good.id)
    assert settled["data"]["settlementDate"] == "2026-01-16"
    assert settled["data"]["expectedSettlementDate"] == "2026-01-16"
    assert settled["data"]["state"] == "settled"
    assert len(events_about(events, "charge.settled", by_reference.id)) == 1
    history = data_of(
        await merchant.get(
            "/v1/subscriptions/payment-history", params={"subscriptionId": good.subscription_id}
        )
    )
    assert [(c["state"], c["expectedSettlementDate"]) for c in history] == [("settled", "2026-01-16")]

    # The same report again: a duplicate, nothing changes (a settled charge never settles twice).
    again = data_of(
        await post_signed(client, "/webhooks/settlements", report, secret=SETTLEMENTS_SECRET, at=clock.now())
    )
    assert (again["duplicate"], again["settled"]) == (True, 0)
    assert await all_events(merchant) == events
    # A new report naming a settled charge refuses that row.
    second = {"eventId": "stl_again", "settlementDate": "2026-01-19", "charges": report["charges"][:1]}
    answer = data_of(
        await post_signed(client, "/webhooks/settlements", second, secret=SETTLEMENTS_SECRET, at=clock.now())
    )
    assert [(r["status"], r["code"]) for r in answer["rows"]] == [("refused", "7074")]

    # The operator lists what was not applied.
    monkeypatch.setattr("billing.cli.common.configure_logging", lambda *_: None)
    env = {"BILLING_DATABASE__URL": db_url, "BILLING_DATA_DIR": str(tmp_path)}
    result = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(cli, ["settlements", "mismatches", "--json"], env=env)
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["eventId"], r["index"], r["code"]) for r in rows] == [
        ("stl_2026_01_16", 2, "7072"),
        ("stl_2026_01_16", 3, "7073"),
        ("stl_2026_01_16", 4, "7044"),
        ("stl_2026_01_16", 5, "7044"),
        ("stl_again", 0, "7074"),
    ]


async def test_a_charge_not_succeeded_never_settles(
    client: Any, merchant: Any, runtime: Any, clock: Any
) -> None:
    plan = await create_plan(merchant)
    declined = await merchant.post(
        "/v1/subscriptions/verify-card",
        json={
            "uid": data_of(
                await merchant.post("/transactions", json={"amount": 1, "currency": "USD", "userId": "u"}),
                201,
            )["uid"],
            "processor": "sandbox",
            "cardInfo": {
                "number": "4000000000000341",
                "expMonth": 12,
                "expYear": 2030,
                "cvv": "123",
                "holderName": "A",
            },
            "shouldCreateSubscription": True,
            "planUid": plan["id"],
        },
    )
    assert declined.status_code == 402
    [failed] = [c for c in await charges_of(runtime) if c.state == "failed"]
    report = {
        "eventId": "stl_failed",
        "settlementDate": "2026-01-16",
        "charges": [{"chargeId": failed.id, "amount": "29.90", "currency": "USD"}],
    }
    answer = data_of(
        await post_signed(client, "/webhooks/settlements", report, secret=SETTLEMENTS_SECRET, at=clock.now())
    )
    assert [(r["status"], r["code"]) for r in answer["rows"]] == [("refused", "7074")]
    assert [c.state for c in await charges_of(runtime) if c.id == failed.id] == ["failed"]


async def test_limits_and_shape(client: Any, clock: Any) -> None:
    rows = [{"chargeId": f"chg_{i}", "amount": "1.00", "currency": "USD"} for i in range(10_001)]
    too_many = {"eventId": "stl_big", "settlementDate": "2026-01-16", "charges": rows}
    error_of(
        await post_signed(
            client, "/webhooks/settlements", too_many, secret=SETTLEMENTS_SECRET, at=clock.now()
        ),
        413,
        "7071",
    )
    huge = b'{"eventId": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    answer = await client.post(
        "/webhooks/settlements",
        content=huge,
        headers=signed_headers(huge, secret=SETTLEMENTS_SECRET, at=clock.now()),
    )
    assert answer.status_code == 413
    bad_row = {
        "eventId": "stl_bad",
        "settlementDate": "2026-01-16",
        "charges": [{"amount": "1.00", "currency": "USD"}],
    }
    error_of(
        await post_signed(
            client, "/webhooks/settlements", bad_row, secret=SETTLEMENTS_SECRET, at=clock.now()
        ),
        400,
        "7000",
        "charges[0]",
    )
    bad_amount = {
        "eventId": "stl_bad2",
        "settlementDate": "2026-01-16",
        "charges": [{"chargeId": "chg_1", "amount": "1.001", "currency": "USD"}],
    }
    error_of(
        await post_signed(
            client, "/webhooks/settlements", bad_amount, secret=SETTLEMENTS_SECRET, at=clock.now()
        ),
        400,
        "7002",
        "charges[0].amount",
    )
    bad_date = {"eventId": "stl_bad3", "settlementDate": "soon", "charges": []}
    error_of(
        await post_signed(
            client, "/webhooks/settlements", bad_date, secret=SETTLEMENTS_SECRET, at=clock.now()
        ),
        400,
        "7000",
        "settlementDate",
    )
    # A volcan-signed body is not a settlement report: each source has its own secret.
    from tests.api.inbound_helpers import VOLCAN_SECRET

    error_of(
        await post_signed(client, "/webhooks/settlements", bad_date, secret=VOLCAN_SECRET, at=clock.now()),
        401,
        "7070",
    )
