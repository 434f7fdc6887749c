"""The real renewal engine (database, charge machinery, worker pass) driven by random events.

Hypothesis plays the world against one subscription: the clock jumps (short hops, to the
next due instant, far ahead), the card starts approving, declining, hard-declining or losing
its first answer, the cardholder sets a new default card, the merchant cancels, and workers
crash in the middle of a charge (their leases are left behind and expire). After every step
the invariants read the database:

- at most one succeeded charge per subscription and period, and each paid period is the
  one the anchored schedule says;
- `inactive` only once the policy allows it (attempts spent or a hard decline under
  `stop_on_hard_decline`, and the grace window over);
- nothing is charged after `cancelled`, `inactive` or `expired`;
- event sequence numbers run 1..n without gaps, and no lease outlives a finished pass.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, update
from sqlmodel import select

from billing.domain.calendar import due_at
from billing.domain.grace import GracePolicy
from billing.domain.renewal import new_default_card
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor, SandboxScenario
from billing.services.renewals.renewal_pass import RenewalPass, state_of
from billing.services.runtime import Runtime, build_runtime
from billing.store.claims import ClaimedSubscription
from billing.store.engine import transaction
from billing.store.models import ALL_TABLES, Charge, Event, Subscription
from tests.clock import FixedClock
from tests.services.renewals import factory

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUB = Subscription.metadata.tables["subscription"]
BEHAVIOURS = {
    "approve": SandboxScenario.APPROVE,
    "decline": SandboxScenario.CHARGES_DECLINE,
    "hard": SandboxScenario.STOLEN,
    "lost answer": SandboxScenario.PROCESSING_ERROR,
}


class WorkerCrash(BaseException):
    """Raised inside a charge call: the worker process dies with the charge in flight."""


class CrashingSandbox:
    """The sandbox, but the next charge kills the worker after the processor recorded it."""

    slug = "sandbox"

    def __init__(self, inner: SandboxProcessor) -> None:
        self.inner = inner
        self.crash_next = False

    async def charge(self, token: str, amount_minor: int, currency: str, **kwargs: Any) -> Outcome:
        outcome = await self.inner.charge(token, amount_minor, currency, **kwargs)
        if self.crash_next:
            self.crash_next = False
            raise WorkerCrash
        return outcome

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EngineLifecycle(RuleBasedStateMachine):
    database_url: str = ""
    base_settings: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FixedClock(START)
        self.sandbox = SandboxProcessor()
        self.processor = CrashingSandbox(self.sandbox)
        self.runtime: Runtime = build_runtime(
            self.base_settings, self.clock, processors={"sandbox": self.processor}
        )
        self.ended_with_charges: int | None = None
        self.skipped = 0  # periods skipped by catch-up, from subscription.periods_skipped events
        self.crash_lease_until: datetime | None = None
        self.cards = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.runtime.aclose())
        self.loop.close()

    # --- set-up ---------------------------------------------------------------------------

    @initialize(
        kind=st.sampled_from(["interval", "anniversary", "fixedDay"]),
        every=st.sampled_from([1, 7, 30]),
        day=st.integers(1, 31),
        tz=st.sampled_from(["America/Guatemala", "America/New_York", "Europe/London", "Pacific/Chatham"]),
        trial_days=st.sampled_from([0, 0, 14]),
        cycles=st.sampled_from([None, None, 2, 4]),
        attempts=st.integers(1, 4),
        interval_hours=st.sampled_from([6, 24, 72]),
        grace_days=st.sampled_from([None, None, 0, 3, 10]),
        card=st.sampled_from(list(BEHAVIOURS)),
    )
    def enrol(self, kind: str, every: int, day: int, tz: str, trial_days: int, cycles: int | None,
              attempts: int, interval_hours: int, grace_days: int | None, card: str) -> None:  # fmt: skip
        self.run(self._reset())
        plan_args: dict[str, Any] = {
            "type": kind,
            "frequency": every if kind == "interval" else (1 if kind == "anniversary" else None),
            "day": day if kind == "fixedDay" else None,
            "trial_days": trial_days,
            "cycles": cycles,
            "daily_attempts": attempts,
            "interval_attempt_hours": interval_hours,
            "grace_days": grace_days,
        }
        self.policy = GracePolicy(attempts=attempts, interval_hours=interval_hours, grace_days=grace_days)

        async def create() -> None:
            async with transaction(self.runtime.sessions) as session:
                client = await factory.make_client(session, now=START, timezone=tz)
                self.plan = await factory.make_plan(session, client, now=START, **plan_args)
                method = await factory.make_method(session, client, "holder", now=START)
                sub = await factory.enrol(session, client, self.plan, method, enrolled_at=START)
                self.sub_id = sub.id
                self.client = client
                self.schedule = factory.schedule_of(self.plan, sub.anchor_date, tz)
                self.token = method.token

        self.run(create())
        self.set_card(card)

    async def _reset(self) -> None:
        async with transaction(self.runtime.sessions) as session:
            conn = await session.connection()
            for model in reversed(ALL_TABLES):
                await conn.execute(delete(model.metadata.tables[model.__tablename__]))

    # --- the world ------------------------------------------------------------------------

    def _pass(self) -> None:
        try:
            self.run(RenewalPass(self.runtime, "w", batch_size=10).run())
        except* WorkerCrash:
            # The process is gone: nothing it had started runs any further.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()

            async def wait_for_the_dead() -> None:
                await asyncio.gather(*tasks, return_exceptions=True)

            self.run(wait_for_the_dead())
            self.crash_lease_until = self.clock.now() + timedelta(
                seconds=self.base_settings.worker.lease_seconds
            )

    @property
    def crashed(self) -> bool:
        """A dead worker's lease is still running."""
        return self.crash_lease_until is not None and self.clock.now() <= self.crash_lease_until

    @rule(hours=st.sampled_from([1, 6, 24, 24 * 7, 24 * 40]))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))
        self._pass()

    @rule()
    def right_when_due(self) -> None:
        sub = self.subscription()
        if sub.next_attempt_at is not None and sub.next_attempt_at > self.clock.now():
            self.clock.set(sub.next_attempt_at)
        self._pass()

    @rule(card=st.sampled_from(list(BEHAVIOURS)))
    def set_card(self, card: str) -> None:
        self.sandbox.set_scenario(self.token, BEHAVIOURS[card])

    @rule(card=st.sampled_from(list(BEHAVIOURS)))
    def new_default_card(self, card: str) -> None:
        """What set-default does: the new card first and, in grace, a retry right away."""

        async def change() -> None:
            async with transaction(self.runtime.sessions) as session:
                self.cards += 1
                method = await factory.make_method(
                    session, self.client, "holder", now=self.clock.now(), priority=-self.cards
                )
                self.token = method.token
                row = await session.get(Subscription, self.sub_id)
                assert row is not None
                values: dict[str, Any] = {"default_payment_method_id": method.id}
                if row.status == "active":
                    claimed = ClaimedSubscription(
                        **{c: getattr(row, c) for c in ClaimedSubscription.__slots__}
                    )
                    moved = new_default_card(state_of(claimed), self.clock.now())
                    if (
                        moved is not None
                        and moved.state.status == "active"
                        and moved.state.episode is not None
                    ):
                        values.update(
                            next_attempt_at=moved.state.next_attempt_at,
                            grace_retry_at=moved.state.episode.next_attempt_at,
                        )
                    elif moved is not None:
                        values.update(next_attempt_at=self.clock.now())  # the worker's deadline check decides
                conn = await session.connection()
                await conn.execute(update(SUB).where(SUB.c.id == self.sub_id).values(**values))

        self.run(change())
        self.set_card(card)

    @rule()
    def merchant_cancels(self) -> None:
        now = self.clock.now()

        async def cancel() -> None:
            async with transaction(self.runtime.sessions) as session:
                conn = await session.connection()
                await conn.execute(
                    update(SUB)
                    .where(SUB.c.id == self.sub_id, SUB.c.status == "active")
                    .values(
                        status="cancelled",
                        cancelled_at=now,
                        ended_at=now,
                        next_attempt_at=None,
                        lease_owner=None,
                        lease_until=None,
                    )
                )

        self.run(cancel())

    @rule()
    def worker_dies_mid_charge(self) -> None:
        self.processor.crash_next = True
        self.right_when_due()
        self.processor.crash_next = False

    # --- what must always hold ------------------------------------------------------------

    def subscription(self) -> Subscription:
        """The subscription row as it is now."""

        async def load() -> Subscription:
            async with self.runtime.sessions() as session:
                row = await session.get(Subscription, self.sub_id)
                assert row is not None
                return row

        result: Subscription = self.run(load())
        return result

    @invariant()
    def the_engine_kept_its_promises(self) -> None:
        sub, charges, sequences = self.run(self._snapshot())
        self._one_success_per_period_on_the_schedule(sub, charges)
        self._nothing_charged_after_the_end(sub, charges)
        self._inactive_only_when_the_policy_says_so(sub, charges)
        # Events are numbered 1..n without gaps.
        assert sorted(sequences) == list(range(1, len(sequences) + 1))
        assert sub.event_seq == len(sequences)
        # No lease outlives a finished pass (a dead worker's lasts until it expires).
        if not self.crashed:
            assert sub.lease_owner is None

    async def _snapshot(self) -> tuple[Subscription, list[Charge], list[int]]:
        async with self.runtime.sessions() as session:
            sub = await session.get(Subscription, self.sub_id)
            assert sub is not None
            charges = list(
                (await session.exec(select(Charge).where(Charge.subscription_id == self.sub_id))).all()
            )
            sequences = (
                await session.exec(select(Event.sequence).where(Event.subscription_id == self.sub_id))
            ).all()
            skips = (
                await session.exec(
                    select(Event.payload)
                    .where(Event.subscription_id == self.sub_id)
                    .where(Event.type == "subscription.periods_skipped")
                )
            ).all()
        self.skipped = sum(int(payload["skippedPeriods"]) for payload in skips)
        return sub, charges, [s for s in sequences if s is not None]

    def _one_success_per_period_on_the_schedule(self, sub: Subscription, charges: list[Charge]) -> None:
        paid = Counter(c.period_index for c in charges if c.state in ("succeeded", "settled"))
        assert all(n == 1 for n in paid.values()), paid
        for c in charges:
            if c.kind == "renewal" and c.period_index is not None:
                assert c.period_start == due_at(self.schedule, c.period_index)
        assert sub.cycles_paid == sum(paid.values())
        if paid:
            last_paid = max(p for p in paid if p is not None)
            # `grace.catch_up = "skip"` (the default): a payment that ends an episode outlasting the
            # next period resumes at the period ahead; the periods in between are skipped, not paid.
            assert last_paid <= sub.period_index <= last_paid + self.skipped, (sub.period_index, paid)

    def _nothing_charged_after_the_end(self, sub: Subscription, charges: list[Charge]) -> None:
        if sub.status == "active":
            return
        if self.ended_with_charges is None:
            self.ended_with_charges = len(charges)
        assert len(charges) == self.ended_with_charges

    def _inactive_only_when_the_policy_says_so(self, sub: Subscription, charges: list[Charge]) -> None:
        if sub.status != "inactive":
            return
        assert sub.grace_started_at is not None
        assert sub.ended_at is not None
        policy = GracePolicy.from_snapshot(sub.grace_policy or {})
        if policy.grace_days:
            assert sub.ended_at >= sub.grace_started_at + timedelta(days=policy.grace_days)
        attempts = sorted(
            (c for c in charges if c.kind == "renewal" and c.period_index == sub.period_index + 1),
            key=lambda c: (c.attempt, c.method_index),
        )
        spent = bool(attempts) and attempts[-1].attempt >= policy.attempts
        stopped = bool(attempts) and attempts[-1].hard_decline and policy.stop_on_hard_decline
        assert spent or stopped, [(c.attempt, c.state, c.hard_decline) for c in attempts]


@pytest.mark.slow
def test_the_engine_keeps_its_promises(db_url: str, settings: Any) -> None:
    EngineLifecycle.database_url = db_url
    EngineLifecycle.base_settings = settings
    run_state_machine_as_test(
        EngineLifecycle,
        settings=hypothesis_settings(
            max_examples=int(os.environ.get("ENGINE_MACHINE_EXAMPLES", "25")),
            stateful_step_count=20,
            deadline=None,
        ),
    )


def test_a_new_card_after_a_week_of_daily_periods_pays_one_and_skips_the_rest(
    db_url: str, settings: Any
) -> None:
    """An example the machine found: a daily plan's hard decline waits out its 7-day window for a new
    card; the card pays the failed period and catch-up skips to the current one (not charged)."""
    EngineLifecycle.database_url = db_url
    EngineLifecycle.base_settings = settings
    machine = EngineLifecycle()
    try:
        machine.enrol(kind="interval", every=1, tz="America/Guatemala", day=1, cycles=None, trial_days=0,
                      attempts=1, interval_hours=6, card="hard", grace_days=None)  # fmt: skip
        machine.the_engine_kept_its_promises()
        machine.time_passes(hours=168)
        machine.the_engine_kept_its_promises()
        machine.new_default_card(card="approve")
        machine.the_engine_kept_its_promises()
        machine.time_passes(hours=1)
        machine.the_engine_kept_its_promises()
        assert machine.skipped > 0
    finally:
        machine.teardown()
