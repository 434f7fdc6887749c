"""The renewal pass on one worker: renew, fall back, fail into grace, expire, resume after a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.calendar import due_at
from billing.processors.sandbox import SandboxProcessor
from billing.services.renewals.renewal_pass import RenewalPass, renewal_key
from billing.services.runtime import Runtime
from billing.store.engine import transaction
from billing.store.models import Charge, Event, Subscription
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


async def _setup(
    runtime: Runtime, *, card: str = "4242424242424242", **plan: Any
) -> tuple[Any, Any, Subscription]:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        the_plan = await factory.make_plan(session, client, now=ENROLLED, **plan)
        method = await factory.make_method(session, client, "user-1", now=ENROLLED, card=card)
        sub = await factory.enrol(session, client, the_plan, method, enrolled_at=ENROLLED)
    return client, the_plan, sub


async def _reload(runtime: Runtime, sub_id: str) -> Subscription:
    async with runtime.sessions() as session:
        found = await session.get(Subscription, sub_id)
        assert found is not None
        return found


async def _charges(runtime: Runtime, sub_id: str) -> list[Charge]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Charge)
            .where(Charge.subscription_id == sub_id)
            .order_by(Charge.created_at, Charge.method_index)
        )
        return list(rows.all())


async def _events(runtime: Runtime, sub_id: str) -> list[Event]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Event).where(Event.subscription_id == sub_id).order_by(Event.sequence)
        )
        return list(rows.all())


async def test_a_due_subscription_renews_from_its_schedule(engine_runtime: Runtime, clock: Any) -> None:
    """The renewal pays period 1 from boundary 1 exactly, and the next look is boundary 2."""
    _, plan, sub = await _setup(engine_runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at + timedelta(hours=3))  # a late worker must not shift the dates

    summary = await RenewalPass(engine_runtime, "w1").run()

    assert summary.renewed == 1
    after = await _reload(engine_runtime, sub.id)
    schedule = factory.schedule_of(plan, sub.anchor_date, sub.timezone)
    assert after.period_index == 1
    assert after.cycles_paid == 2
    assert after.current_period_start == due_at(schedule, 1)
    assert after.current_period_end == due_at(schedule, 2)
    assert after.next_attempt_at == due_at(schedule, 2)
    assert after.renewal_status == "current"
    assert (after.lease_owner, after.lease_until) == (None, None)
    renewal = [c for c in await _charges(engine_runtime, sub.id) if c.kind == "renewal"]
    assert [(c.state, c.idempotency_key, c.period_index) for c in renewal] == [
        ("succeeded", renewal_key(sub.id, due_at(schedule, 1), 1), 1)
    ]
    assert renewal[0].amount_minor == plan.amount_minor
    events = await _events(engine_runtime, sub.id)
    assert [(e.type, e.sequence) for e in events] == [("charge.succeeded", 1), ("subscription.renewed", 2)]
    assert after.event_seq == 2


async def test_nothing_happens_before_the_due_instant(engine_runtime: Runtime, clock: Any) -> None:
    _, _, sub = await _setup(engine_runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at - timedelta(microseconds=1))
    summary = await RenewalPass(engine_runtime, "w1").run()
    assert summary.claimed == 0
    assert [c.kind for c in await _charges(engine_runtime, sub.id)] == ["enrolment"]


async def test_the_current_plan_amount_is_charged(engine_runtime: Runtime, clock: Any) -> None:
    """PUT /v1/plans changes future renewals: the amount is read at renewal time."""
    _, plan, sub = await _setup(engine_runtime, amount_minor=1000)
    async with transaction(engine_runtime.sessions) as session:
        stored = await session.get(type(plan), plan.id)
        assert stored is not None
        stored.amount_minor = 2500
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    await RenewalPass(engine_runtime, "w1").run()
    renewal = [c for c in await _charges(engine_runtime, sub.id) if c.kind == "renewal"]
    assert [c.amount_minor for c in renewal] == [2500]


async def test_a_decline_starts_a_grace_episode(engine_runtime: Runtime, clock: Any) -> None:
    _, _, sub = await _setup(engine_runtime, card="4000000000000341")
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    summary = await RenewalPass(engine_runtime, "w1").run()
    assert summary.payment_failed == 1
    after = await _reload(engine_runtime, sub.id)
    assert (after.status, after.renewal_status) == ("active", "in_grace")
    assert after.grace_started_at == sub.next_attempt_at
    assert after.grace_attempts == 1
    # config/billing.toml default: 4 attempts, 24 h apart, no grace days.
    assert after.grace_retry_at == sub.next_attempt_at + timedelta(hours=24)
    assert after.next_attempt_at == after.grace_retry_at
    assert after.grace_policy == {
        "attempts": 4,
        "interval_hours": 24.0,
        "grace_days": 7,
        "stop_on_hard_decline": True,
    }
    assert after.period_index == 0  # the period was not paid
    events = [e.type for e in await _events(engine_runtime, sub.id)]
    assert events == ["charge.failed", "subscription.payment_failed"]


async def test_fallback_method_pays_when_the_default_declines(engine_runtime: Runtime, clock: Any) -> None:
    async with transaction(engine_runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        plan = await factory.make_plan(session, client, now=ENROLLED)
        default = await factory.make_method(
            session, client, "u", now=ENROLLED, card="4000000000009995", priority=1
        )
        fallback = await factory.make_method(
            session, client, "u", now=ENROLLED, card="4242424242424242", priority=0
        )
        sub = await factory.enrol(session, client, plan, default, enrolled_at=ENROLLED, fallbacks=(fallback,))
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    summary = await RenewalPass(engine_runtime, "w1").run()
    assert summary.renewed == 1
    renewal = [c for c in await _charges(engine_runtime, sub.id) if c.kind == "renewal"]
    key = renewal_key(sub.id, sub.next_attempt_at, 1)
    assert [(c.method_index, c.state, c.idempotency_key, c.decline_code) for c in renewal] == [
        (0, "failed", key, "7303"),
        (1, "succeeded", f"{key}:m1", None),
    ]
    assert [e.type for e in await _events(engine_runtime, sub.id)] == [
        "charge.failed",
        "charge.succeeded",
        "subscription.renewed",
    ]


async def test_fixed_term_expires_at_the_end_of_the_last_period(engine_runtime: Runtime, clock: Any) -> None:
    _, _, sub = await _setup(engine_runtime, auto_renewal=False)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at + timedelta(days=2))
    summary = await RenewalPass(engine_runtime, "w1").run()
    assert summary.expired == 1
    after = await _reload(engine_runtime, sub.id)
    assert (after.status, after.renewal_status) == ("expired", "ended")
    assert after.ended_at == sub.next_attempt_at
    assert after.next_attempt_at is None
    assert [c.kind for c in await _charges(engine_runtime, sub.id)] == ["enrolment"]
    assert [e.type for e in await _events(engine_runtime, sub.id)] == ["subscription.expired"]


async def test_trial_is_charged_at_trial_end(engine_runtime: Runtime, clock: Any) -> None:
    _, plan, sub = await _setup(engine_runtime, trial_days=14)
    assert sub.period_index == -1
    assert sub.next_attempt_at == sub.trial_ends_at
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    await RenewalPass(engine_runtime, "w1").run()
    after = await _reload(engine_runtime, sub.id)
    schedule = factory.schedule_of(plan, sub.anchor_date, sub.timezone)
    assert (after.period_index, after.cycles_paid) == (0, 1)
    assert after.current_period_start == due_at(schedule, 0)
    assert after.next_attempt_at == due_at(schedule, 1)


async def test_an_unknown_answer_is_reconciled_by_lookup(
    engine_runtime: Runtime, clock: Any, sandbox: SandboxProcessor
) -> None:
    """4000000000000119 loses the first answer; the key is looked up, never charged twice."""
    _, _, sub = await _setup(engine_runtime, card="4000000000000119")
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    summary = await RenewalPass(engine_runtime, "w1").run()
    assert summary.renewed == 1
    renewal = [c for c in await _charges(engine_runtime, sub.id) if c.kind == "renewal"]
    assert [c.state for c in renewal] == ["succeeded"]
    assert len(sandbox.ledger) == 1  # type: ignore[arg-type]
