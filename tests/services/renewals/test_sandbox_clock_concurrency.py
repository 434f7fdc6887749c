"""Moves of one sandbox clock that arrive together all count, and nothing due is charged twice."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from billing.domain.calendar import Schedule, due_at
from tests.api.conftest import create_plan, data_of, enrol

pytestmark = pytest.mark.anyio

DAY = 86_400


async def _clock(merchant: Any) -> dict[str, Any]:
    result: dict[str, Any] = data_of(await merchant.get("/v1/sandbox/clock"))
    return result


async def test_concurrent_advances_add_up(concurrent_merchant_factory: Any) -> None:
    merchant = await concurrent_merchant_factory(name="Clockwork")
    before = await _clock(merchant)
    answers = await asyncio.gather(
        *(merchant.post("/v1/sandbox/clock", json={"advanceSeconds": 3600}) for _ in range(3))
    )
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    after = await _clock(merchant)
    assert after["offsetSeconds"] - before["offsetSeconds"] == 3 * 3600
    # Each answer saw the clock after its own move: one, two and three hours ahead.
    offsets = sorted(data_of(answer)["offsetSeconds"] - before["offsetSeconds"] for answer in answers)
    assert offsets == [3600, 7200, 10800]


async def test_concurrent_advances_renew_each_period_once_at_its_instant(
    concurrent_merchant_factory: Any,
) -> None:
    merchant = await concurrent_merchant_factory(name="Clockwork")
    plan = await create_plan(merchant, type="anniversary", frequency={"frequency": 1}, amount=9)
    sub = (await enrol(merchant, plan["id"], number="4242424242424242"))["subscription"]
    schedule = Schedule("anniversary", 1, datetime.fromisoformat(sub["anchorDate"]).date(), sub["timezone"])

    # Three moves of 40 days each, together: 120 days, so four monthly renewals are due.
    answers = await asyncio.gather(
        *(merchant.post("/v1/sandbox/clock", json={"advanceSeconds": 40 * DAY}) for _ in range(3))
    )
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert (await _clock(merchant))["offsetSeconds"] == 120 * DAY

    history: list[dict[str, Any]] = data_of(
        await merchant.get("/v1/subscriptions/payment-history", params={"subscriptionId": sub["id"]})
    )
    renewals = sorted((c for c in history if c["kind"] == "renewal"), key=lambda c: c["periodStart"])
    assert [datetime.fromisoformat(c["periodStart"]) for c in renewals] == [
        due_at(schedule, k) for k in range(1, 5)
    ]
    assert [c["state"] for c in renewals] == ["succeeded"] * 4
