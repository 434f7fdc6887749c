"""The sandbox clock (service level): a jump runs every renewal, retry and expiry inside it, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.calendar import due_at
from billing.domain.errors import BillingError
from billing.domain.grace import GracePolicy, timeline
from billing.services.runtime import Runtime
from billing.services.sandbox_clock import advance_clock, read_clock
from billing.store.engine import transaction
from billing.store.models import Charge, Client, Event, Subscription
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the `clock` fixture's start


async def _enrolled(
    runtime: Runtime, *, card: str, environment: str = "sandbox", **plan: Any
) -> Subscription:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED, environment=environment)
        the_plan = await factory.make_plan(session, client, now=ENROLLED, **plan)
        method = await factory.make_method(session, client, "u-1", now=ENROLLED, card=card)
        return await factory.enrol(session, client, the_plan, method, enrolled_at=ENROLLED)


async def _renewals(runtime: Runtime, sub_id: str) -> list[Charge]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Charge)
            .where(Charge.subscription_id == sub_id, Charge.kind == "renewal")
            .order_by(Charge.created_at, Charge.method_index)
        )
        return list(rows.all())


async def _events(runtime: Runtime, sub_id: str) -> list[Event]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Event).where(Event.subscription_id == sub_id).order_by(Event.sequence)
        )
        return list(rows.all())


async def test_a_year_of_monthly_renewals_in_one_jump(engine_runtime: Runtime) -> None:
    sub = await _enrolled(engine_runtime, card="4242424242424242")
    clock = await advance_clock(engine_runtime, sub.client_id, advance_seconds=365 * 86400)

    assert clock.now == ENROLLED + timedelta(days=365)
    schedule = factory.schedule_of_row(sub)
    charges = await _renewals(engine_runtime, sub.id)
    assert [c.state for c in charges] == ["succeeded"] * 12
    assert [c.period_start for c in charges] == [due_at(schedule, k) for k in range(1, 13)]
    assert [c.created_at for c in charges] == [due_at(schedule, k) for k in range(1, 13)]
    async with engine_runtime.sessions() as session:
        after = await session.get(Subscription, sub.id)
    assert after is not None
    assert (after.period_index, after.cycles_paid) == (12, 13)
    assert after.next_attempt_at == due_at(schedule, 13)
    # Guatemala is UTC-6 all year: every renewal is at local midnight, 06:00 UTC, on the 15th.
    assert {(c.period_start.day, c.period_start.hour) for c in charges if c.period_start} == {(15, 6)}


async def test_a_declining_card_walks_the_policy_timeline_to_inactive(engine_runtime: Runtime) -> None:
    """4000000000000341 with 3 attempts 24 h apart and 7 grace days: the dated timeline, exactly."""
    sub = await _enrolled(
        engine_runtime, card="4000000000000341", daily_attempts=3, interval_attempt_hours=24, grace_days=7
    )
    assert sub.next_attempt_at is not None
    first_failure = sub.next_attempt_at
    policy = GracePolicy(attempts=3, interval_hours=24, grace_days=7, stop_on_hard_decline=True)
    expected = timeline(policy, first_failure, sub.timezone)

    # Just before the window ends: still active, in grace, three failed attempts at the planned times.
    await advance_clock(engine_runtime, sub.client_id, to=first_failure + timedelta(days=7, seconds=-1))
    async with engine_runtime.sessions() as session:
        mid = await session.get(Subscription, sub.id)
    assert mid is not None
    assert (mid.status, mid.renewal_status) == ("active", "in_grace")
    attempts = await _renewals(engine_runtime, sub.id)
    assert [(c.attempt, c.created_at, c.state) for c in attempts] == [
        (1, first_failure, "failed"),
        (2, first_failure + timedelta(hours=24), "failed"),
        (3, first_failure + timedelta(hours=48), "failed"),
    ]
    assert [c.created_at for c in attempts] == [step.at for step in expected[:3]]

    await advance_clock(engine_runtime, sub.client_id, advance_seconds=1)
    async with engine_runtime.sessions() as session:
        end = await session.get(Subscription, sub.id)
    assert end is not None
    assert end.status == "inactive"
    assert end.ended_at == expected[-1].at == first_failure + timedelta(days=7)
    events = await _events(engine_runtime, sub.id)
    assert [(e.type, e.created_at) for e in events] == [
        ("charge.failed", first_failure),
        ("subscription.payment_failed", first_failure),
        ("charge.failed", first_failure + timedelta(hours=24)),
        ("charge.failed", first_failure + timedelta(hours=48)),
        ("subscription.inactive", first_failure + timedelta(days=7)),
    ]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]


async def test_other_clients_are_not_affected(engine_runtime: Runtime) -> None:
    mine = await _enrolled(engine_runtime, card="4242424242424242")
    theirs = await _enrolled(engine_runtime, card="4242424242424242")
    await advance_clock(engine_runtime, mine.client_id, advance_seconds=40 * 86400)
    assert len(await _renewals(engine_runtime, mine.id)) == 1
    assert await _renewals(engine_runtime, theirs.id) == []
    assert (await read_clock(engine_runtime, theirs.client_id)).offset_seconds == 0


async def test_a_worker_pass_uses_each_clients_own_now(engine_runtime: Runtime) -> None:
    """After a jump the client's renewals fall due on its clock, not on real time."""
    sub = await _enrolled(engine_runtime, card="4242424242424242")
    other = await _enrolled(engine_runtime, card="4242424242424242")
    async with transaction(engine_runtime.sessions) as session:
        client = await session.get(Client, sub.client_id)
        assert client is not None
        assert sub.next_attempt_at is not None
        client.clock_offset_seconds = int((sub.next_attempt_at - ENROLLED).total_seconds())
    from billing.services.renewals import RenewalPass

    summary = await RenewalPass(engine_runtime, "w").run()
    assert summary.renewed == 1
    assert len(await _renewals(engine_runtime, sub.id)) == 1
    assert await _renewals(engine_runtime, other.id) == []


async def test_production_clients_cannot_move_their_clock(engine_runtime: Runtime) -> None:
    sub = await _enrolled(engine_runtime, card="4242424242424242", environment="production")
    with pytest.raises(BillingError) as caught:
        await advance_clock(engine_runtime, sub.client_id, advance_seconds=60)
    assert caught.value.code == "7020"
    with pytest.raises(BillingError) as caught:
        await read_clock(engine_runtime, sub.client_id)
    assert caught.value.code == "7020"


@pytest.mark.parametrize(
    ("to", "seconds", "field"),
    [
        (None, None, "to"),
        (datetime(2026, 1, 1, tzinfo=UTC), None, "to"),
        (datetime(2026, 3, 1), None, "to"),  # naive
        (None, -1.0, "advanceSeconds"),
        (None, 3661.0 * 86400, "advanceSeconds"),
        (datetime(2026, 3, 1, tzinfo=UTC), 5.0, "to"),
    ],
)
async def test_bad_jumps_are_refused_and_name_the_field(
    engine_runtime: Runtime, to: datetime | None, seconds: float | None, field: str
) -> None:
    sub = await _enrolled(engine_runtime, card="4242424242424242")
    with pytest.raises(BillingError) as caught:
        await advance_clock(engine_runtime, sub.client_id, to=to, advance_seconds=seconds)
    assert (caught.value.code, caught.value.field) == ("7000", field)
    assert (await read_clock(engine_runtime, sub.client_id)).offset_seconds == 0
