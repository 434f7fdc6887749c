"""Full-size batches processed to completion: a 5,000-item JSON batch and a 50,000-row CSV."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, func, select

from billing.processors.sandbox import SandboxScenario
from billing.services.ondemand import OnDemandPass
from billing.store.models import BatchItem, Charge, Event

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def drain_until_idle(runtime: Any) -> None:
    while (await OnDemandPass(runtime, "volume-worker").run()).claimed:
        pass


async def charge_counts(runtime: Any, batch_id: str) -> dict[str, int]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Charge.state, func.count()).where(Charge.batch_id == batch_id).group_by(col(Charge.state))
        )
        return {state: int(count) for state, count in rows.all()}


async def open_items(runtime: Any, batch_id: str) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).where(
            BatchItem.batch_id == batch_id, col(BatchItem.state).in_(["queued", "pending", "unknown"])
        )
        return int((await session.exec(query)).one())


async def completions(runtime: Any, batch_id: str) -> int:
    async with runtime.sessions() as session:
        events = (await session.exec(select(Event).where(Event.type == "batch.completed"))).all()
    return sum(1 for event in events if event.payload["batchId"] == batch_id)


async def test_a_5000_item_batch_is_charged_to_completion(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    approving = await subscriptions.make(merchant.id, count=450)
    poor = await subscriptions.make(merchant.id, count=50, cards=[SandboxScenario.INSUFFICIENT_FUNDS])
    everyone = approving + poor
    items = [{"subscriptionId": everyone[i % 500].id, "amount": Decimal("1.10")} for i in range(5000)]
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["batchId"]

    await drain_until_idle(runtime)

    status = (
        await merchant.get(f"/v1/subscriptions/charges/batches/{batch_id}", params={"limit": 1})
    ).json()["data"]
    assert status["status"] == "completed"
    assert status["totals"] == {
        "received": 5000,
        "accepted": 5000,
        "rejected": 0,
        "succeeded": 4500,
        "failed": 500,
        "inProgress": 0,
    }
    assert await charge_counts(runtime, batch_id) == {"succeeded": 4500, "failed": 500}
    assert await open_items(runtime, batch_id) == 0
    assert await completions(runtime, batch_id) == 1
    assert len(runtime.processors["sandbox"].ledger) == 5000


async def test_a_50000_row_csv_is_charged_to_completion(
    merchant: Any, subscriptions: Any, runtime: Any
) -> None:
    subs = await subscriptions.make(merchant.id, count=1000)
    lines = ["subscriptionId,amount,metadata"]
    for row in range(50_000):
        # Every 1,000th row names nobody: rejected with its line number, the rest still charged.
        sub_id = "sub_nobody" if row % 1000 == 999 else subs[row % 1000].id
        lines.append(f'{sub_id},2.50,"{{""row"": {row}}}"')
    content = ("\n".join(lines) + "\n").encode()
    response = await merchant.post(
        "/v1/subscriptions/charges/upload-csv",
        files={"file": ("big.csv", content, "text/csv")},
        data={"clientId": merchant.id},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    tracking_id = body["trackingId"]
    batch_id = body["data"]["batchId"]
    assert body["data"]["totals"]["accepted"] == 49_950
    assert body["data"]["errorsSample"][0] == {
        "index": 1001,
        "line": 1001,
        "subscriptionId": "sub_nobody",
        "code": "7041",
        "message": "Subscription sub_nobody not found.",
    }

    await drain_until_idle(runtime)

    status = (
        await merchant.get(
            f"/v1/subscriptions/charges/upload-csv/{tracking_id}", params={"state": "rejected"}
        )
    ).json()["data"]
    assert status["status"] == "completed"
    assert status["totals"] == {
        "received": 50_000,
        "accepted": 49_950,
        "rejected": 50,
        "succeeded": 49_950,
        "failed": 0,
        "inProgress": 0,
    }
    assert [item["line"] for item in status["items"]] == [1001 + 1000 * k for k in range(50)]
    assert await charge_counts(runtime, batch_id) == {"succeeded": 49_950}
    assert await open_items(runtime, batch_id) == 0
    assert await completions(runtime, batch_id) == 1

    results = await merchant.get(
        f"/v1/subscriptions/charges/upload-csv/{tracking_id}", params={"format": "csv"}
    )
    rows = results.text.splitlines()
    assert len(rows) == 50_001
    assert rows[1].split(",")[0] == "2"
