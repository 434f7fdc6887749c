"""A captured signed charge batch, re-sent as it was, queues one charge (never one per copy)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlmodel import select

from billing.store.models import BatchItem, Charge

pytestmark = pytest.mark.anyio

CHARGES = "/v1/subscriptions/charges"
_EXACT_JSON = msgspec.json.Encoder(decimal_format="number")


async def test_a_replayed_charge_batch_charges_once(merchant: Any, subscriptions: Any, runtime: Any) -> None:
    from billing.worker import run_pass_once

    sub = await subscriptions.one(merchant.id)
    body = _EXACT_JSON.encode(
        {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("7.00")}]}
    )
    headers = {
        "Authorization": f"Bearer {merchant.access_token}",
        "Content-Type": "application/json",
        **merchant.signed_headers(body, method="POST", target=CHARGES),
    }
    answers = [await merchant.http.post(CHARGES, content=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 401, 401]
    assert {a.json()["errors"][0]["code"] for a in answers[1:]} == {"7604"}

    await run_pass_once(runtime, "test")
    async with runtime.sessions() as session:
        items = (await session.exec(select(BatchItem))).all()
        charges = (await session.exec(select(Charge).where(Charge.subscription_id == sub.id))).all()
    assert len(items) == 1
    ondemand = [c for c in charges if c.kind == "on_demand"]
    assert [(c.amount_minor, c.state) for c in ondemand] == [(700, "succeeded")]
