"""What happens when workers crash, stall, or race the merchant: never a second charge, never a lost one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.renewals.renewal_pass import RenewalPass, renewal_key
from billing.services.runtime import Runtime, build_runtime
from billing.store.engine import transaction
from billing.store.ids import new_id
from billing.store.models import Charge, Event, PaymentMethod, Subscription
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUB_TABLE = Subscription.metadata.tables["subscription"]


class Spy:
    """A processor in front of the sandbox that counts calls and can act in the middle of a charge."""

    slug = "sandbox"

    def __init__(self, inner: SandboxProcessor) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.during_charge: Callable[[str], Awaitable[None]] | None = None
        self.answer: Outcome | None = None
        self.lookup_fails = False

    async def charge(
        self, token: str, amount_minor: int, currency: str, *, idempotency_key: str, description: str = ""
    ) -> Outcome:
        self.calls["charge"] += 1
        outcome = await self.inner.charge(token, amount_minor, currency, idempotency_key=idempotency_key)
        if self.during_charge is not None:
            await self.during_charge(idempotency_key)
        return self.answer or outcome

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        self.calls["lookup"] += 1
        if self.lookup_fails:
            raise BillingError("PROCESSOR_ERROR")
        return await self.inner.lookup(idempotency_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def spied(settings: Any, clock: Any, sandbox: SandboxProcessor) -> Any:
    spy = Spy(sandbox)
    runtime = build_runtime(settings, clock, processors={"sandbox": spy})
    try:
        yield runtime, spy
    finally:
        await runtime.aclose()


async def _enrolled(runtime: Runtime, card: str = "4242424242424242", **plan: Any) -> Subscription:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        the_plan = await factory.make_plan(session, client, now=ENROLLED, **plan)
        method = await factory.make_method(session, client, "u-1", now=ENROLLED, card=card)
        return await factory.enrol(session, client, the_plan, method, enrolled_at=ENROLLED)


async def _get(runtime: Runtime, sub_id: str) -> Subscription:
    async with runtime.sessions() as session:
        found = await session.get(Subscription, sub_id)
        assert found is not None
        return found


async def _renewals(runtime: Runtime, sub_id: str) -> list[Charge]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Charge)
            .where(Charge.subscription_id == sub_id, Charge.kind == "renewal")
            .order_by(Charge.created_at)
        )
        return list(rows.all())


async def _event_types(runtime: Runtime, sub_id: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(Event).where(Event.subscription_id == sub_id).order_by(Event.sequence)
        )
        return [e.type for e in rows.all()]


async def _set(runtime: Runtime, sub_id: str, **values: Any) -> None:
    async with transaction(runtime.sessions) as session:
        conn = await session.connection()
        await conn.execute(update(SUB_TABLE).where(SUB_TABLE.c.id == sub_id).values(**values))


async def _pending_row_of_a_crashed_worker(runtime: Runtime, sub: Subscription, token: str) -> str:
    """The `pending` charge a worker committed right before it died, and its expired lease."""
    assert sub.next_attempt_at is not None
    assert sub.default_payment_method_id is not None
    key = renewal_key(sub.id, sub.next_attempt_at, 1)
    async with transaction(runtime.sessions) as session:
        session.add(
            Charge(
                id=new_id("charge"),
                client_id=sub.client_id,
                subscription_id=sub.id,
                kind="renewal",
                amount_minor=1000,
                currency="USD",
                payment_method_id=sub.default_payment_method_id,
                processor="sandbox",
                period_start=sub.next_attempt_at,
                period_index=1,
                attempt=1,
                method_index=0,
                state="pending",
                idempotency_key=key,
                created_at=sub.next_attempt_at,
                updated_at=sub.next_attempt_at,
            )
        )
    await _set(runtime, sub.id, lease_owner="dead-worker", lease_until=ENROLLED)
    return key


async def _token(runtime: Runtime, sub: Subscription) -> str:
    async with runtime.sessions() as session:
        method = await session.get(PaymentMethod, sub.default_payment_method_id)
        assert method is not None
        return method.token


@pytest.mark.parametrize("processor_saw_it", [False, True])
async def test_a_crashed_workers_pending_charge_is_resumed_not_repeated(
    spied: Any, clock: Any, sandbox: SandboxProcessor, processor_saw_it: bool
) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime)
    token = await _token(runtime, sub)
    key = await _pending_row_of_a_crashed_worker(runtime, sub, token)
    if processor_saw_it:
        await sandbox.charge(token, 1000, "USD", idempotency_key=key)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at + timedelta(minutes=5))

    summary = await RenewalPass(runtime, "w2").run()

    assert summary.renewed == 1
    assert spy.calls["lookup"] == 1
    assert spy.calls["charge"] == (0 if processor_saw_it else 1)  # same key, only when never seen
    assert [(c.idempotency_key, c.state) for c in await _renewals(runtime, sub.id)] == [(key, "succeeded")]
    assert list(sandbox.ledger.entries) == [key]  # type: ignore[attr-defined]
    assert (await _get(runtime, sub.id)).period_index == 1


async def test_a_live_lease_is_respected_until_it_expires(spied: Any, clock: Any, settings: Any) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    await _set(runtime, sub.id, lease_owner="busy-worker", lease_until=clock.now() + timedelta(seconds=30))
    assert (await RenewalPass(runtime, "w2").run()).claimed == 0
    clock.advance(timedelta(seconds=31))
    assert (await RenewalPass(runtime, "w2").run()).renewed == 1
    assert spy.calls["charge"] == 1


async def test_a_worker_that_lost_its_lease_writes_nothing_and_the_next_one_finishes(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    """Worker 1 stalls past its lease mid-charge; worker 2 took the row; nothing is charged twice."""
    runtime, spy = spied
    sub = await _enrolled(runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)

    async def steal(_key: str) -> None:
        await _set(runtime, sub.id, lease_owner="w2", lease_until=clock.now() + timedelta(seconds=10))

    spy.during_charge = steal
    first = await RenewalPass(runtime, "w1").run()
    assert (first.lost_leases, first.renewed) == (1, 0)
    assert (await _get(runtime, sub.id)).period_index == 0
    assert await _event_types(runtime, sub.id) == []

    spy.during_charge = None
    clock.advance(timedelta(seconds=11))  # worker 2 (the thief) died too; its lease runs out
    second = await RenewalPass(runtime, "w3").run()
    assert second.renewed == 1
    charges = await _renewals(runtime, sub.id)
    assert [c.state for c in charges] == ["succeeded"]
    assert spy.calls["charge"] == 1  # worker 2 found the outcome on the row: no call at all
    assert len(sandbox.ledger) == 1  # type: ignore[arg-type]
    assert await _event_types(runtime, sub.id) == ["charge.succeeded", "subscription.renewed"]


async def test_cancelled_while_the_charge_was_in_flight(spied: Any, clock: Any) -> None:
    """The charge stands as the processor answered; the subscription stays cancelled."""
    runtime, spy = spied
    sub = await _enrolled(runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)

    async def cancel(_key: str) -> None:
        await _set(runtime, sub.id, status="cancelled", cancelled_at=clock.now(), next_attempt_at=None)

    spy.during_charge = cancel
    await RenewalPass(runtime, "w1").run()
    after = await _get(runtime, sub.id)
    assert (after.status, after.period_index, after.lease_owner, after.next_attempt_at) == (
        "cancelled",
        0,
        None,
        None,
    )
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
    assert await _event_types(runtime, sub.id) == ["charge.succeeded"]
    spy.during_charge = None
    clock.advance(timedelta(days=40))
    assert (await RenewalPass(runtime, "w1").run()).claimed == 0


async def test_a_new_default_card_during_a_failing_attempt_retries_at_once(spied: Any, clock: Any) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime, card="4000000000000341")
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    async with transaction(runtime.sessions) as session:
        client = await session.get(factory.Client, sub.client_id)
        assert client is not None
        good = await factory.make_method(
            session, client, "u-1", now=ENROLLED, card="4242424242424242", priority=5
        )

    async def switch(_key: str) -> None:
        await _set(runtime, sub.id, default_payment_method_id=good.id)

    # The cardholder's other card would be a fallback; hide it until the switch by removing it.
    await _set_method_status(runtime, good.id, "removed")

    async def switch_and_restore(key: str) -> None:
        await _set_method_status(runtime, good.id, "active")
        await switch(key)

    spy.during_charge = switch_and_restore
    first = await RenewalPass(runtime, "w1").run()
    assert first.payment_failed == 1
    assert first.recovered == 1  # the immediate retry, in the same pass, with the new card
    after = await _get(runtime, sub.id)
    assert (after.renewal_status, after.period_index) == ("current", 1)
    charges = await _renewals(runtime, sub.id)
    assert [(c.attempt, c.state, c.payment_method_id) for c in charges] == [
        (1, "failed", sub.default_payment_method_id),
        (2, "succeeded", good.id),
    ]


async def _set_method_status(runtime: Runtime, method_id: str, status: str) -> None:
    table = PaymentMethod.metadata.tables["payment_method"]
    async with transaction(runtime.sessions) as session:
        conn = await session.connection()
        await conn.execute(update(table).where(table.c.id == method_id).values(status=status))


async def test_a_stolen_card_without_grace_days_is_inactive_at_once(spied: Any, clock: Any) -> None:
    runtime, _ = spied
    sub = await _enrolled(runtime, card="4100000000000019", grace_days=0)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    summary = await RenewalPass(runtime, "w1").run()
    assert summary.inactive == 1
    after = await _get(runtime, sub.id)
    assert (after.status, after.grace_attempts, after.grace_retry_at) == ("inactive", 1, None)
    assert await _event_types(runtime, sub.id) == [
        "charge.failed",
        "subscription.payment_failed",
        "subscription.inactive",
    ]


async def test_a_stolen_card_with_grace_days_waits_for_the_window_without_retrying(
    spied: Any, clock: Any
) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime, card="4100000000000019", grace_days=3)
    assert sub.next_attempt_at is not None
    first_failure = sub.next_attempt_at
    clock.set(first_failure)
    await RenewalPass(runtime, "w1").run()
    after = await _get(runtime, sub.id)
    assert (after.status, after.renewal_status, after.grace_retry_at) == ("active", "in_grace", None)
    assert after.next_attempt_at == after.grace_deadline == first_failure + timedelta(days=3)
    clock.set(first_failure + timedelta(days=3) - timedelta(seconds=1))
    assert (await RenewalPass(runtime, "w1").run()).claimed == 0
    clock.set(first_failure + timedelta(days=3))
    assert (await RenewalPass(runtime, "w1").run()).inactive == 1
    assert spy.calls["charge"] == 1


async def test_a_retry_due_exactly_at_the_window_end_still_happens(spied: Any, clock: Any) -> None:
    """2 attempts 72 h apart with 3 grace days: the retry and the window end coincide; the retry wins."""
    runtime, spy = spied
    sub = await _enrolled(
        runtime, card="4000000000000341", daily_attempts=2, interval_attempt_hours=72, grace_days=3
    )
    assert sub.next_attempt_at is not None
    first_failure = sub.next_attempt_at
    clock.set(first_failure)
    await RenewalPass(runtime, "w1").run()
    after = await _get(runtime, sub.id)
    assert after.grace_retry_at == after.grace_deadline == first_failure + timedelta(hours=72)
    clock.set(first_failure + timedelta(hours=72))
    summary = await RenewalPass(runtime, "w1").run()
    assert (summary.retries_failed, summary.inactive) == (1, 1)
    assert spy.calls["charge"] == 2


async def test_an_answer_that_never_comes_leaves_the_charge_unknown_until_reconciled(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime)
    assert sub.next_attempt_at is not None
    clock.set(sub.next_attempt_at)
    spy.answer = Outcome.unknown()
    spy.lookup_fails = True
    summary = await RenewalPass(runtime, "w1").run()
    assert (summary.unknown, summary.renewed) == (1, 0)
    after = await _get(runtime, sub.id)
    assert after.lease_owner is None
    assert after.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["unknown"]
    assert await _event_types(runtime, sub.id) == []

    spy.answer = None
    spy.lookup_fails = False
    clock.advance(timedelta(seconds=60))
    summary = await RenewalPass(runtime, "w1").run()
    assert summary.renewed == 1
    assert spy.calls["charge"] == 1  # the lookup found the first charge: never a second one
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
    assert len(sandbox.ledger) == 1  # type: ignore[arg-type]


async def test_many_subscriptions_across_batches_and_lanes(engine_runtime: Runtime, clock: Any) -> None:
    """Small batches force several claims and concurrent lanes over the bulk statements."""
    cards = ["4242424242424242", "4000000000000341", "4000000000000119", "4100000000000019"]
    subs: dict[str, list[str]] = {}
    async with transaction(engine_runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        # No grace window: a hard decline (the last card) is inactive at once.
        plan = await factory.make_plan(session, client, now=ENROLLED, grace_days=0)
        for number in cards:
            subs[number] = await factory.enrol_many(
                session, client, plan, count=9, enrolled_at=ENROLLED, card=number
            )
    async with engine_runtime.sessions() as session:
        due = (await session.get(Subscription, subs[cards[0]][0])).next_attempt_at  # type: ignore[union-attr]
    clock.set(due)
    summary = await RenewalPass(engine_runtime, "w1", batch_size=5, lanes=3).run()
    assert summary.claimed == 36
    assert (summary.renewed, summary.payment_failed, summary.inactive) == (18, 18, 9)
    async with engine_runtime.sessions() as session:
        rows = (await session.exec(select(Subscription))).all()
        charges = (await session.exec(select(Charge).where(Charge.kind == "renewal"))).all()
    status = {s.id: (s.status, s.renewal_status, s.period_index, s.lease_owner) for s in rows}
    for sub_id in subs[cards[0]] + subs[cards[2]]:
        assert status[sub_id] == ("active", "current", 1, None)
    for sub_id in subs[cards[1]]:
        assert status[sub_id] == ("active", "in_grace", 0, None)
    for sub_id in subs[cards[3]]:
        assert status[sub_id] == ("inactive", "ended", 0, None)
    assert Counter(c.state for c in charges) == {"succeeded": 18, "failed": 18}
    assert len({c.idempotency_key for c in charges}) == 36
