"""Queued items the worker cannot charge get a final state, so a batch always completes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing.services.ondemand import OnDemandPass
from billing.store.ids import new_id
from billing.store.models import Batch, BatchItem

pytestmark = pytest.mark.anyio

CHARGES = "/v1/subscriptions/charges"


async def queue_raw_items(
    runtime: Any, client_id: str, items: list[tuple[str | None, int | None, str | None]]
) -> str:
    """A batch stored as intake would, but with items intake would never accept (no such checks here)."""
    now = runtime.clock.now()
    batch = Batch(
        id=new_id("batch"),
        client_id=client_id,
        source="json",
        status="queued",
        total=len(items),
        accepted=len(items),
        created_at=now,
    )
    async with runtime.sessions() as session, session.begin():
        session.add(batch)
        await session.flush()
        for index, (sub_id, amount_minor, currency) in enumerate(items):
            session.add(
                BatchItem(
                    client_id=client_id,
                    batch_id=batch.id,
                    item_index=index,
                    subscription_id=sub_id,
                    amount_minor=amount_minor,
                    currency=currency,
                    state="queued",
                )
            )
    return batch.id


async def test_items_without_a_subscription_row_or_an_amount_fail_and_complete_the_batch(
    merchant: Any, subscriptions: Any, runtime: Any, clock: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    batch_id = await queue_raw_items(
        runtime,
        merchant.id,
        [("sub_no_such_row", 500, "USD"), (sub.id, None, None), (sub.id, 250, "USD")],
    )
    summary = await OnDemandPass(runtime, "worker-a").run()
    assert (summary.claimed, summary.not_chargeable, summary.succeeded) == (3, 2, 1)
    assert summary.batches_completed == 1

    data = (await merchant.get(f"{CHARGES}/batches/{batch_id}")).json()["data"]
    assert data["status"] == "completed"
    assert data["totals"] == {
        "received": 3,
        "accepted": 3,
        "rejected": 0,
        "succeeded": 1,
        "failed": 2,
        "inProgress": 0,
    }
    outcomes = [(item["state"], item["code"], item["chargeId"]) for item in data["items"]]
    assert outcomes[:2] == [("failed", "7041", None), ("failed", "7000", None)]
    assert outcomes[2][0] == "succeeded"

    # Final: once every lease has run out, nothing is claimed again.
    clock.advance(timedelta(seconds=runtime.settings.worker.lease_seconds * 2))
    again = await OnDemandPass(runtime, "worker-b").run()
    assert again.claimed == 0
