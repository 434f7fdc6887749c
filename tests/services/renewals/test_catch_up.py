"""A late payment whose next period is already over: skipped by default, or charged one interval later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.calendar import due_at
from billing.processors.sandbox import SandboxProcessor
from billing.services.payment_methods import set_default_payment_method
from billing.services.renewals import RenewalPass
from billing.services.renewals.renewal_pass import schedule_of
from billing.services.runtime import Runtime, build_runtime
from billing.store.engine import transaction
from billing.store.models import Charge, Client, Event, Plan, Subscription
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


async def _failing_then_recovered(runtime: Runtime, clock: Any) -> tuple[Subscription, Any]:
    """A weekly subscription whose renewal fails, stays in grace past the next boundary, then recovers."""
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        plan = await factory.make_plan(
            session, client, now=ENROLLED, type="interval", frequency=7, daily_attempts=2, grace_days=20
        )
        method = await factory.make_method(session, client, "u-1", now=ENROLLED, card="4000000000000341")
        sub = await factory.enrol(session, client, plan, method, enrolled_at=ENROLLED)
    stored_plan = await _plan(runtime, sub.plan_id)
    schedule = schedule_of(stored_plan, sub.anchor_date, sub.timezone)  # type: ignore[arg-type]
    clock.set(due_at(schedule, 1))
    await RenewalPass(runtime, "w1").run()  # attempt 1 fails
    clock.advance(timedelta(days=1))
    await RenewalPass(runtime, "w1").run()  # attempt 2 fails: in grace until the window ends
    clock.set(due_at(schedule, 2) + timedelta(days=2))  # period 1 is over, period 2 under way
    async with transaction(runtime.sessions) as session:
        client_row = await session.get(Client, sub.client_id)
        assert client_row is not None
        good = await factory.make_method(session, client_row, "u-1", now=clock.now(), card="4242424242424242")
    async with transaction(runtime.sessions) as session:
        await set_default_payment_method(
            session, runtime.clock, client_id=sub.client_id, subscription_id=sub.id, method_id=good.id
        )
    await RenewalPass(runtime, "w1").run()  # the new card pays period 1
    return sub, schedule


async def _plan(runtime: Runtime, plan_id: str) -> Plan:
    async with runtime.sessions() as session:
        plan = await session.get(Plan, plan_id)
        assert plan is not None
        return plan


async def _state(runtime: Runtime, sub_id: str) -> tuple[Subscription, list[Charge], list[Event]]:
    async with runtime.sessions() as session:
        sub = await session.get(Subscription, sub_id)
        charges = (
            await session.exec(
                select(Charge).where(Charge.subscription_id == sub_id, Charge.kind == "renewal")
            )
        ).all()
        events = (await session.exec(select(Event).where(Event.subscription_id == sub_id))).all()
    assert sub is not None
    return sub, list(charges), sorted(events, key=lambda e: e.sequence)


async def test_by_default_the_overdue_period_is_skipped_with_an_event(
    engine_runtime: Runtime, clock: Any
) -> None:
    sub, schedule = await _failing_then_recovered(engine_runtime, clock)
    after, charges, events = await _state(engine_runtime, sub.id)
    succeeded = [c for c in charges if c.state == "succeeded"]
    assert [c.period_start for c in succeeded] == [due_at(schedule, 1)]
    assert (after.status, after.renewal_status, after.period_index) == ("active", "current", 2)
    assert after.next_attempt_at == due_at(schedule, 3)
    assert (after.current_period_start, after.current_period_end) == (
        due_at(schedule, 2),
        due_at(schedule, 3),
    )
    skipped = [e for e in events if e.type == "subscription.periods_skipped"]
    assert len(skipped) == 1
    assert skipped[0].payload["skippedPeriods"] == 1
    assert skipped[0].payload["nextAttemptAt"] == due_at(schedule, 3).isoformat()
    # Nothing more is charged before period 3.
    clock.set(due_at(schedule, 3) - timedelta(seconds=1))
    assert (await RenewalPass(engine_runtime, "w1").run()).claimed == 0


@pytest.fixture
async def charging_runtime(settings: Any, clock: Any, sandbox: SandboxProcessor) -> AsyncIterator[Runtime]:
    catching_up = settings.model_copy(
        update={"grace": settings.grace.model_copy(update={"catch_up": "charge"})}
    )
    runtime = build_runtime(catching_up, clock, processors={"sandbox": sandbox})
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_charge_mode_charges_the_overdue_period_one_interval_later(
    charging_runtime: Runtime, clock: Any
) -> None:
    sub, schedule = await _failing_then_recovered(charging_runtime, clock)
    recovered_at = clock.now()
    after, charges, _ = await _state(charging_runtime, sub.id)
    assert [c.period_start for c in charges if c.state == "succeeded"] == [due_at(schedule, 1)]
    assert after.next_attempt_at == recovered_at + timedelta(hours=24)  # the retry interval, not at once
    clock.set(recovered_at + timedelta(hours=24))
    await RenewalPass(charging_runtime, "w1").run()
    after, charges, _ = await _state(charging_runtime, sub.id)
    paid = sorted((c.period_start, c.created_at) for c in charges if c.state == "succeeded")
    assert [start for start, _ in paid] == [due_at(schedule, 1), due_at(schedule, 2)]
    assert paid[1][1] - paid[0][1] >= timedelta(hours=24)
    assert after.next_attempt_at == due_at(schedule, 3)
