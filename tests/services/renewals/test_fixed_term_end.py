"""A fixed term whose last cycle keeps failing: retries stop at the term's end, which expires it unpaid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.calendar import due_at
from billing.services.renewals import RenewalPass
from billing.services.renewals.renewal_pass import schedule_of
from billing.services.runtime import Runtime
from billing.store.engine import transaction
from billing.store.models import Charge, Event, Plan, Subscription
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


async def test_the_last_cycle_retries_until_the_term_ends_then_expires_unpaid(
    engine_runtime: Runtime, clock: Any
) -> None:
    async with transaction(engine_runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        plan = await factory.make_plan(
            session,
            client,
            now=ENROLLED,
            type="interval",
            frequency=7,
            cycles=2,
            daily_attempts=4,
            interval_attempt_hours=72,
            grace_days=20,
        )
        method = await factory.make_method(session, client, "u-1", now=ENROLLED, card="4000000000000341")
        sub = await factory.enrol(session, client, plan, method, enrolled_at=ENROLLED)
        stored = await session.get(Plan, plan.id)
    schedule = schedule_of(stored, sub.anchor_date, sub.timezone)  # type: ignore[arg-type]
    last_cycle, term_end = due_at(schedule, 1), due_at(schedule, 2)

    # The last cycle fails at its start, then 3 and 6 days later; a 4th attempt (day 9) would be
    # after the term's end (day 7), so none is scheduled and the 20-day window is cut at the term's end.
    for at in (last_cycle, last_cycle + timedelta(days=3), last_cycle + timedelta(days=6)):
        clock.set(at)
        await RenewalPass(engine_runtime, "w1").run()
    async with engine_runtime.sessions() as session:
        mid = await session.get(Subscription, sub.id)
    assert mid is not None
    assert (mid.status, mid.renewal_status, mid.grace_retry_at) == ("active", "in_grace", None)
    assert mid.next_attempt_at == term_end

    clock.set(term_end - timedelta(seconds=1))
    assert (await RenewalPass(engine_runtime, "w1").run()).claimed == 0
    clock.set(term_end)
    assert (await RenewalPass(engine_runtime, "w1").run()).expired == 1

    async with engine_runtime.sessions() as session:
        after = await session.get(Subscription, sub.id)
        charges = (
            await session.exec(
                select(Charge).where(Charge.subscription_id == sub.id, Charge.kind == "renewal")
            )
        ).all()
        events = (await session.exec(select(Event).where(Event.subscription_id == sub.id))).all()
    assert after is not None
    assert (after.status, after.renewal_status, after.ended_at) == ("expired", "ended", term_end)
    assert (after.cycles_paid, after.grace_attempts) == (1, 3)
    assert sorted(c.created_at for c in charges) == [
        last_cycle,
        last_cycle + timedelta(days=3),
        last_cycle + timedelta(days=6),
    ]
    assert {c.state for c in charges} == {"failed"}
    [expiry] = [e for e in events if e.type == "subscription.expired"]
    assert expiry.payload["lastCycleUnpaid"] is True
    assert expiry.payload["endedAt"] == term_end.isoformat()
    assert not [e for e in events if e.type == "subscription.inactive"]
