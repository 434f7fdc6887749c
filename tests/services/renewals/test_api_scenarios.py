"""Through the API: enrol with verify-card, then drive the schedule with the sandbox clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from billing.domain.calendar import Schedule, due_at
from billing.domain.grace import GracePolicy, timeline
from tests.api.conftest import create_plan, data_of, enrol, error_of

pytestmark = pytest.mark.anyio


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _advance(merchant: Any, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = data_of(await merchant.post("/v1/sandbox/clock", json=body))
    return result


async def _subscription(merchant: Any, sub_id: str) -> dict[str, Any]:
    result: dict[str, Any] = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub_id}"))
    return result


async def _history(merchant: Any, sub_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = data_of(
        await merchant.get("/v1/subscriptions/payment-history", params={"subscriptionId": sub_id})
    )
    return sorted(rows, key=lambda r: (r["createdAt"], r["attempt"]))


async def test_card_0341_walks_current_in_grace_inactive_on_the_policy_timeline(merchant: Any) -> None:
    """Trial end: the first charge declines; 3 attempts 24 h apart; inactive 7 days after the first failure."""
    plan = await create_plan(
        merchant,
        type="interval",
        frequency={"frequency": 30},
        trialDays=7,
        dailyAttempts=3,
        intervalAttempt=24,
        graceDays=7,
    )
    sub = (await enrol(merchant, plan["id"], number="4000000000000341"))["subscription"]
    assert (sub["status"], sub["renewalStatus"]) == ("active", "current")
    first_failure = _at(sub["nextRenewalDate"])
    steps = timeline(GracePolicy(attempts=3, interval_hours=24, grace_days=7), first_failure, sub["timezone"])
    retry_times = [step.at for step in steps[:3]]
    inactive_at = steps[-1].at
    assert inactive_at == first_failure + timedelta(days=7)

    await _advance(merchant, to=(first_failure - timedelta(seconds=1)).isoformat())
    sub = await _subscription(merchant, sub["id"])
    assert (sub["status"], sub["renewalStatus"]) == ("active", "current")
    assert await _history(merchant, sub["id"]) == []

    seen: list[tuple[str, str, int]] = []
    for n, at in enumerate(retry_times, start=1):
        await _advance(merchant, to=at.isoformat())
        sub = await _subscription(merchant, sub["id"])
        seen.append((sub["status"], sub["renewalStatus"], sub["grace"]["attemptsMade"]))
        history = await _history(merchant, sub["id"])
        assert [(_at(c["createdAt"]), c["attempt"], c["state"]) for c in history] == [
            (retry_times[i], i + 1, "failed") for i in range(n)
        ]
    assert seen == [("active", "in_grace", 1), ("active", "in_grace", 2), ("active", "in_grace", 3)]
    assert _at(sub["grace"]["deadline"]) == inactive_at

    await _advance(merchant, to=(inactive_at - timedelta(seconds=1)).isoformat())
    assert (await _subscription(merchant, sub["id"]))["status"] == "active"
    clock = await _advance(merchant, advanceSeconds=1)
    assert _at(clock["now"]) == inactive_at
    sub = await _subscription(merchant, sub["id"])
    assert (sub["status"], sub["renewalStatus"]) == ("inactive", "ended")
    assert sub["grace"]["nextAttemptAt"] is None
    assert sub["grace"]["attemptsMade"] == 3
    assert _at(sub["endedAt"]) == inactive_at
    assert len(await _history(merchant, sub["id"])) == 3


async def test_card_4242_renews_every_month_for_a_year(merchant: Any) -> None:
    """Enrolled on Jan 31: Feb 28, Mar 31, Apr 30, ... Jan 31 — twelve renewals, no drift, no gap."""
    start = _at((await merchant.get("/v1/sandbox/clock")).json()["data"]["now"])
    # 15:00 UTC on Jan 31 is 09:00 in America/Guatemala (the client's zone): enrolment date Jan 31.
    await _advance(merchant, to=start.replace(day=31, hour=15).isoformat())
    plan = await create_plan(merchant, type="anniversary", frequency={"frequency": 1}, amount=12.5)
    sub = (await enrol(merchant, plan["id"], number="4242424242424242"))["subscription"]
    schedule = Schedule("anniversary", 1, datetime.fromisoformat(sub["anchorDate"]).date(), sub["timezone"])
    assert _at(sub["nextRenewalDate"]) == due_at(schedule, 1)

    await _advance(merchant, advanceSeconds=365 * 86400)

    history = await _history(merchant, sub["id"])
    renewals = [c for c in history if c["kind"] == "renewal"]
    assert [c["state"] for c in renewals] == ["succeeded"] * 12
    assert [c["amount"] for c in renewals] == [12.5] * 12
    assert [_at(c["periodStart"]) for c in renewals] == [due_at(schedule, k) for k in range(1, 13)]
    local_days = [
        (d.month, d.day) for d in (due_at(schedule, k).astimezone(schedule_zone(sub)) for k in range(1, 13))
    ]
    assert local_days == [
        (2, 28),
        (3, 31),
        (4, 30),
        (5, 31),
        (6, 30),
        (7, 31),
        (8, 31),
        (9, 30),
        (10, 31),
        (11, 30),
        (12, 31),
        (1, 31),
    ]
    sub = await _subscription(merchant, sub["id"])
    assert (sub["status"], sub["renewalStatus"], sub["cyclesPaid"]) == ("active", "current", 13)
    assert _at(sub["nextRenewalDate"]) == due_at(schedule, 13)


def schedule_zone(sub: dict[str, Any]) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(sub["timezone"])


async def test_sandbox_clock_is_refused_to_production_clients(merchant_factory: Any) -> None:
    prod = await merchant_factory(name="Live", environment="production")
    error_of(await prod.get("/v1/sandbox/clock"), 403, "7020")
    error_of(await prod.post("/v1/sandbox/clock", json={"advanceSeconds": 60}), 403, "7020")


async def test_bad_clock_requests_name_the_field(merchant: Any) -> None:
    error_of(await merchant.post("/v1/sandbox/clock", json={}), 400, "7000", "to")
    error_of(await merchant.post("/v1/sandbox/clock", json={"to": "tomorrow"}), 400, "7000", "to")
    error_of(await merchant.post("/v1/sandbox/clock", json={"to": "2020-01-01T00:00:00Z"}), 400, "7000", "to")
    error_of(
        await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": -5}), 400, "7000", "advanceSeconds"
    )
    error_of(await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": "60"}), 400, "7000")
    clock = data_of(await merchant.get("/v1/sandbox/clock"))
    assert clock["offsetSeconds"] == 0
