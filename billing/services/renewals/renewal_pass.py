"""The renewal pass: renew due subscriptions, retry failed renewals, expire finished terms.

One pass drains what is due, batch by batch, in a few concurrent lanes:

1. **Claim** a batch of due subscriptions with a lease (`billing.store.claims`), and in the
   same transaction read their plans and payment methods, write the rows of work that
   needs no charge (expiry, end of grace) and the `pending` charges of the rest. Commit.
2. **Charge** through `billing.services.charging`: processor calls overlap (a semaphore
   bounds them), fallbacks follow the default method, `unknown` answers are reconciled by
   looking up the idempotency key.
3. **Record** each final outcome with its consequence in one transaction: the charge row,
   the subscription's new state (`billing.domain.renewal`), the events, the lease released.
   A worker that lost its lease (it stalled past `lease_seconds`) writes nothing for that
   subscription; the worker that took over resumes the same charge rows. Leases are
   extended between charge rounds, and a cancel leaves the lease alone, so the worker
   whose charge is in flight records it (with its `charge.*` event) on the cancelled row.
   Open charges left on subscriptions that are no longer active are settled by
   `billing.services.renewals.reconciliation`.

"Due" uses the client's now (real time plus the sandbox clock offset); a pass handles the
clients whose clock runs ahead first, each with its own now. Leases use real time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.domain.calendar import Schedule, due_at, term_cycles
from billing.domain.errors import BillingError
from billing.domain.events import RENEWAL_EVENTS, GraceEpisode, RenewalSnapshot
from billing.domain.grace import Episode, GracePolicy
from billing.domain.renewal import (
    PERIODS_SKIPPED,
    CatchUp,
    ChargePeriod,
    CheckDeadline,
    Expire,
    RenewalState,
    Terms,
    Transition,
    due_step,
    expired,
    grace_deadline_reached,
    new_default_card,
    renewal_failed,
    renewed,
)
from billing.services.charging import (
    ChargeRequest,
    ChargeResult,
    KeepAlive,
    methods_in_order,
    open_charges,
)
from billing.services.grace_policies import policy_for_plan
from billing.services.pass_control import LanePass, PassSummary, Progress
from billing.services.runtime import Runtime
from billing.store import claims
from billing.store.claims import ClaimedSubscription
from billing.store.engine import Session, transaction
from billing.store.events import NewEvent, insert_events
from billing.store.payment_methods import methods_of_subscriptions
from billing.store.plans import PlanTerms, plans_by_id
from billing.store.renewals import (
    SubscriptionUpdate,
    lock_for_outcome,
    release_with_next_attempt,
    write_subscription_states,
)

log = logging.getLogger("billing.renewals")

# A row the pass cannot make sense of (bad plan data) is parked this long, with an error log.
PARK_AFTER_ERROR = timedelta(hours=1)


@dataclass
class RenewalSummary(PassSummary):
    """What a renewal pass (or part of one) did."""

    renewed: int = 0
    payment_failed: int = 0
    retries_failed: int = 0
    recovered: int = 0
    inactive: int = 0
    expired: int = 0
    lost_leases: int = 0
    parked: int = 0
    batches: int = 0


@dataclass(slots=True)
class _Item:
    """One claimed subscription on its way through a batch."""

    sub: ClaimedSubscription
    now: datetime
    state: RenewalState
    terms: Terms | None = None
    step: ChargePeriod | Expire | CheckDeadline | None = None
    request: ChargeRequest | None = None
    # The row could not be processed (bad plan data): parked with an error.
    broken: bool = False


def episode_of(sub: ClaimedSubscription) -> Episode | None:
    """The grace episode stored on a subscription row, or None when it is not in grace."""
    if sub.renewal_status != "in_grace" or sub.grace_started_at is None or not sub.grace_policy:
        return None
    return Episode(
        started_at=sub.grace_started_at,
        attempts_made=sub.grace_attempts,
        policy=GracePolicy.from_snapshot(sub.grace_policy),
        next_attempt_at=sub.grace_retry_at,
    )


def state_of(sub: ClaimedSubscription) -> RenewalState:
    """The renewal state of a claimed row."""
    return RenewalState(
        status=sub.status,  # type: ignore[arg-type]
        renewal_status=sub.renewal_status,  # type: ignore[arg-type]
        period_index=sub.period_index,
        cycles_paid=sub.cycles_paid,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        next_attempt_at=sub.next_attempt_at,
        episode=episode_of(sub),
    )


def schedule_of(plan: PlanTerms, anchor: Any, tz: str) -> Schedule:
    """The anchored schedule of a subscription on `plan`."""
    if plan.type == "fixedDay":
        return Schedule("fixedDay", 1, anchor, tz, day=plan.frequency_day)
    if plan.type == "interval":
        return Schedule("interval", plan.frequency or 0, anchor, tz)
    return Schedule(plan.type, plan.frequency or 1, anchor, tz)  # type: ignore[arg-type]


def terms_of(
    plan: PlanTerms, sub: ClaimedSubscription, policy: GracePolicy, catch_up: CatchUp = "skip"
) -> Terms:
    """Schedule, fixed term, grace policy (`policy_for_plan`) and catch-up rule for a subscription on `plan`."""
    return Terms(
        schedule=schedule_of(plan, sub.anchor_date, sub.timezone),
        cycles=term_cycles(plan.cycles, plan.auto_renewal),
        policy=policy,
        catch_up=catch_up,
    )


def renewal_key(subscription_id: str, period_start: datetime, attempt: int) -> str:
    """The idempotency key of a renewal charge (method 0; fallbacks add `:m{i}`)."""
    return f"{subscription_id}:{period_start.isoformat()}:{attempt}"


def renewal_description(subscription_id: str, period_index: int) -> str:
    """The processor description of a renewal charge (a pure function of its key)."""
    return f"Subscription {subscription_id}: period {period_index}"


def _update_of(sub_id: str, state: RenewalState, updated_at: datetime) -> SubscriptionUpdate:
    episode = state.episode
    return SubscriptionUpdate(
        id=sub_id,
        status=state.status,
        renewal_status=state.renewal_status,
        period_index=state.period_index,
        cycles_paid=state.cycles_paid,
        current_period_start=state.current_period_start,
        current_period_end=state.current_period_end,
        next_attempt_at=state.next_attempt_at,
        grace_started_at=episode.started_at if episode else None,
        grace_attempts=episode.attempts_made if episode else 0,
        grace_deadline=episode.window_ends_at if episode else None,
        grace_retry_at=episode.next_attempt_at if episode else None,
        grace_policy=episode.policy.to_snapshot() if episode else None,
        ended_at=state.ended_at,
        updated_at=updated_at,
    )


def _renewal_event(
    event_type: str, sub: ClaimedSubscription, state: RenewalState, **context: Any
) -> RenewalSnapshot:
    """The payload of a renewal step's `subscription.*` event: the subscription's new state,
    `nextAttemptAt` and the grace episode; `context` adds what was charged."""
    episode = state.episode
    grace = (
        None
        if episode is None
        else GraceEpisode(
            started_at=episode.started_at,
            attempts_made=episode.attempts_made,
            next_retry_at=episode.next_attempt_at,
            window_ends_at=episode.window_ends_at,
            policy=episode.policy.to_snapshot(),
        )
    )
    return RENEWAL_EVENTS[event_type](
        subscription_id=sub.id,
        client_id=sub.client_id,
        user_id=sub.user_id,
        plan_uid=sub.plan_id,
        trx_uid=sub.trx_id,
        currency=sub.currency,
        status=state.status,
        renewal_status=state.renewal_status,
        current_period_start=state.current_period_start,
        current_period_end=state.current_period_end,
        trial_ends_at=sub.trial_ends_at,
        cycles_paid=state.cycles_paid,
        default_payment_method_id=sub.default_payment_method_id,
        cancelled_at=None,
        next_attempt_at=state.next_attempt_at,
        ended_at=state.ended_at,
        grace=grace,
        **context,
    )


class RenewalPass(LanePass[RenewalSummary]):
    """One worker's renewal pass. Build one per pass; `run()` drains what is due.

    `drain(client_id=..., now=...)` runs one client's due rows as of the instant `now()` gives
    (the sandbox clock advances a client that way).
    """

    summary_type = RenewalSummary

    async def run(self) -> RenewalSummary:
        """Renew everything due now, clients with a sandbox clock offset first."""
        async with transaction(self.runtime.sessions) as session:
            offsets = await claims.clients_with_clock_offset(session)
        for client_id, offset in offsets.items():
            await self.drain(client_id=client_id, now=self._shifted_now(offset))
        await self.drain(client_id=None, now=self.runtime.clock.now, offsets=offsets)
        return self.summary

    def _shifted_now(self, offset_seconds: int) -> Callable[[], datetime]:
        shift = timedelta(seconds=offset_seconds)
        return lambda: self.runtime.clock.now() + shift

    async def drain(
        self,
        *,
        client_id: str | None,
        now: Callable[[], datetime],
        offsets: Mapping[str, int] | None = None,
    ) -> RenewalSummary:
        """Claim and process batches until nothing is due (or the process is stopping).

        `now()` is the due-time bound of each claim; with `offsets` each row is processed at
        its own client's now (the bound plus the client's offset).
        """
        bounds = offsets or {}
        await self.in_lanes(lambda: self.process_one_batch(client_id=client_id, now=now(), offsets=bounds))
        return self.summary

    async def process_one_batch(
        self,
        *,
        client_id: str | None,
        now: datetime,
        offsets: Mapping[str, int],
        subscription_id: str | None = None,
    ) -> int:
        """Claim one batch due at `now` (or only `subscription_id`) and take it to the end;
        returns how many were claimed."""
        runtime = self.runtime
        real_now = runtime.clock.now()
        async with transaction(runtime.sessions) as session:
            claimed = await claims.claim_due_subscriptions(
                session,
                owner=self.identity,
                now=now,
                real_now=real_now,
                lease_seconds=self.lease_seconds,
                limit=self.batch_size,
                client_id=client_id,
                subscription_id=subscription_id,
            )
            if not claimed:
                return 0
            items = await self._prepare(session, claimed, now, offsets)
            charging = [item for item in items if item.request is not None]
            run = await open_charges(
                session,
                [item.request for item in charging if item.request],
                now=now,
                settlement_country=runtime.settings.settlement.country,
            )
            await self._write_without_charge(session, [i for i in items if i.request is None], real_now)
        self.summary.claimed += len(claimed)
        self.summary.batches += 1
        if charging:
            by_key = {item.request.key: item for item in charging if item.request is not None}

            async def apply(session: Session, results: Sequence[ChargeResult]) -> None:
                await self._apply_results(session, results, by_key)

            await run.settle(
                runtime.sessions,
                runtime.processors,
                apply=apply,
                semaphore=self.semaphore,
                keep_alive=self._lease_keeper([sub.id for sub in claimed], real_now),
            )
        if self.progress is not None:
            self.progress(len(claimed))
        return len(claimed)

    def _lease_keeper(self, subscription_ids: list[str], claimed_at: datetime) -> KeepAlive:
        """Extend this batch's leases between settle rounds once a third of the lease has passed,
        so no other worker takes over rows whose charges are still being worked on."""
        renewed_at = claimed_at
        lease = timedelta(seconds=self.lease_seconds)

        async def keep_alive(session: Session) -> None:
            nonlocal renewed_at
            real_now = self.runtime.clock.now()
            if real_now - renewed_at < lease / 3:
                return
            await claims.extend_leases(session, subscription_ids, self.identity, until=real_now + lease)
            renewed_at = real_now

        return keep_alive

    async def _prepare(
        self,
        session: Session,
        claimed: Sequence[ClaimedSubscription],
        now: datetime,
        offsets: Mapping[str, int],
    ) -> list[_Item]:
        plans = await plans_by_id(session, [sub.plan_id for sub in claimed])
        backing = await methods_of_subscriptions(session, [(s.client_id, s.id) for s in claimed])
        grace = self.runtime.settings.grace
        policies: dict[str, GracePolicy] = {}
        items: list[_Item] = []
        for sub in claimed:
            at = now + timedelta(seconds=offsets.get(sub.client_id, 0))
            item = _Item(sub=sub, now=at, state=state_of(sub))
            items.append(item)
            plan = plans.get(sub.plan_id)
            try:
                if plan is None:
                    raise BillingError("PLAN_NOT_FOUND")
                policy = policies.get(plan.id)
                if policy is None:
                    policy = policies[plan.id] = policy_for_plan(grace, plan)
                item.terms = terms_of(plan, sub, policy, grace.catch_up)
                item.step = due_step(item.state, item.terms, at)
            except (BillingError, ValueError) as exc:
                log.error("cannot renew subscription", extra={"subscription_id": sub.id, "error": str(exc)})
                item.step = None
                item.broken = True
                continue
            if isinstance(item.step, ChargePeriod):
                assert plan is not None
                step = item.step
                item.request = ChargeRequest(
                    key=renewal_key(sub.id, step.period_start, step.attempt),
                    client_id=sub.client_id,
                    kind="renewal",
                    amount_minor=plan.amount_minor,
                    currency=plan.currency,
                    methods=methods_in_order(
                        sub.default_payment_method_id,
                        plan.methods,
                        backing.get(sub.id, []),
                        self.runtime.processors,
                    ),
                    subscription_id=sub.id,
                    period_start=step.period_start,
                    period_index=step.k,
                    attempt=step.attempt,
                    # What the key identifies, nothing a merchant can edit: a resend under the
                    # same key must carry the same parameters.
                    description=renewal_description(sub.id, step.k),
                    at=at,
                )
        return items

    async def _write_without_charge(
        self, session: Session, items: Sequence[_Item], real_now: datetime
    ) -> None:
        """Expiries, grace deadlines and rows that cannot be processed (parked with an error)."""
        if not items:
            return
        transitions: dict[str, tuple[_Item, Transition]] = {}
        parked: dict[str, datetime | None] = {}
        not_yet: dict[str, datetime | None] = {}
        for item in items:
            if isinstance(item.step, Expire):
                transitions[item.sub.id] = (item, expired(item.state, item.now))
            elif isinstance(item.step, CheckDeadline):
                transitions[item.sub.id] = (item, grace_deadline_reached(item.state, item.now, item.terms))
            elif item.broken or item.terms is None:
                parked[item.sub.id] = item.now + PARK_AFTER_ERROR
            else:
                # Made due before its next period starts: look again when that period starts.
                not_yet[item.sub.id] = due_at(item.terms.schedule, item.state.period_index + 1)
        if parked:
            self.summary.parked += len(parked)
            await release_with_next_attempt(session, parked)
        if not_yet:
            await release_with_next_attempt(session, not_yet)
        if not transitions:
            return
        counts = {sub_id: len(t.events) for sub_id, (_, t) in transitions.items()}
        locked = await lock_for_outcome(session, self.identity, counts)
        updates: list[SubscriptionUpdate] = []
        new_events: list[NewEvent] = []
        for sub_id, (item, transition) in transitions.items():
            row = locked.get(sub_id)
            if row is None or row.status != "active":
                continue
            updates.append(_update_of(sub_id, transition.state, real_now))
            new_events += self._subscription_events(item, transition, row.first_sequence)
            self._count(transition)
        await write_subscription_states(session, updates)
        await insert_events(session, new_events)

    async def _apply_results(
        self, session: Session, results: Sequence[ChargeResult], by_key: Mapping[str, _Item]
    ) -> None:
        """Write what final charge results mean for their subscriptions (charging's `apply`)."""
        real_now = self.runtime.clock.now()
        plans: list[tuple[_Item, ChargeResult, Transition | None]] = []
        if_active: dict[str, int] = {}
        otherwise: dict[str, int] = {}
        for result in results:
            item = by_key[result.request.key]
            assert item.terms is not None
            assert isinstance(item.step, ChargePeriod)
            transition: Transition | None = None
            if result.state == "succeeded":
                transition = renewed(item.state, item.terms, item.step, item.now)
            elif result.state == "failed":
                transition = renewal_failed(item.state, item.terms, item.now, hard=result.hard)
            charge_events = 0 if result.state == "unknown" else len(result.records)
            if_active[item.sub.id] = charge_events + (len(transition.events) if transition else 0)
            otherwise[item.sub.id] = charge_events
            plans.append((item, result, transition))
        locked = await lock_for_outcome(session, self.identity, if_active, otherwise)
        updates: list[SubscriptionUpdate] = []
        new_events: list[NewEvent] = []
        reconcile_later: dict[str, datetime | None] = {}
        for item, result, transition in plans:
            row = locked.get(item.sub.id)
            if row is None:
                # Our lease ran out and another worker took the row; it resumes these charges.
                self.summary.lost_leases += 1
                log.warning(
                    "lease lost before the outcome was written", extra={"subscription_id": item.sub.id}
                )
                continue
            if result.state == "unknown":
                self.summary.unknown += 1
                reconcile_later[item.sub.id] = item.now + self.reconcile_after
                continue
            sequence = row.first_sequence
            for record in result.records:
                new_events.append(
                    NewEvent(
                        client_id=item.sub.client_id,
                        payload=record.event(result.request),
                        created_at=item.now,
                        subscription_id=item.sub.id,
                        sequence=sequence,
                    )
                )
                sequence += 1
            if row.status != "active" or transition is None:
                # Cancelled while the charge was in flight: the charge stands as recorded,
                # the subscription stays as the merchant left it.
                reconcile_later[item.sub.id] = None
                continue
            if (
                result.state == "failed"
                and row.default_payment_method_id != item.sub.default_payment_method_id
                and transition.state.status == "active"
            ):
                # A new default card arrived while this attempt was in flight: retry it at once.
                card = new_default_card(transition.state, item.now)
                if card is not None and not card.events:
                    transition = Transition(card.state, transition.events)
            updates.append(_update_of(item.sub.id, transition.state, real_now))
            new_events += self._subscription_events(item, transition, sequence, result)
            self._count(transition, result)
        await write_subscription_states(session, updates)
        await insert_events(session, new_events)
        if reconcile_later:
            await _release(session, self.identity, reconcile_later)

    def _subscription_events(
        self, item: _Item, transition: Transition, first_sequence: int, result: ChargeResult | None = None
    ) -> list[NewEvent]:
        out: list[NewEvent] = []
        context: dict[str, Any] = {}
        if result is not None:
            context["attempt"] = result.request.attempt
            context["period_start"] = result.request.period_start
            if result.charge is not None:
                context["charge_id"] = result.charge.charge_id
            if result.state == "failed":
                context["decline_code"] = result.decline_code
                context["hard_decline"] = result.hard
        for offset, event_type in enumerate(transition.events):
            extra: dict[str, Any] = {}
            if event_type == "subscription.expired" and transition.state.episode is not None:
                extra = {"last_cycle_unpaid": True}
            elif event_type == PERIODS_SKIPPED and isinstance(item.step, ChargePeriod) and item.terms:
                extra = {
                    "skipped_periods": transition.state.period_index - item.step.k,
                    "skipped_from": due_at(item.terms.schedule, item.step.k + 1),
                }
            out.append(
                NewEvent(
                    client_id=item.sub.client_id,
                    payload=_renewal_event(event_type, item.sub, transition.state, **context, **extra),
                    created_at=item.now,
                    subscription_id=item.sub.id,
                    sequence=first_sequence + offset,
                )
            )
        return out

    def _count(self, transition: Transition, result: ChargeResult | None = None) -> None:
        summary = self.summary
        types = set(transition.events)
        if "subscription.renewed" in types:
            summary.renewed += 1
        if "subscription.recovered" in types:
            summary.recovered += 1
        if "subscription.payment_failed" in types:
            summary.payment_failed += 1
        elif result is not None and result.state == "failed":
            summary.retries_failed += 1
        if "subscription.inactive" in types:
            summary.inactive += 1
        if "subscription.expired" in types:
            summary.expired += 1


async def _release(session: Session, owner: str, next_attempts: Mapping[str, datetime | None]) -> None:
    """Release leases; rows mapped to an instant are looked at again then, the rest keep theirs."""
    moving = {k: v for k, v in next_attempts.items() if v is not None}
    keeping = [k for k, v in next_attempts.items() if v is None]
    if moving:
        await release_with_next_attempt(session, moving)
    if keeping:
        await claims.release_leases(session, keeping, owner)


async def due_now(runtime: Runtime) -> int:
    """How many subscriptions are due right now, each at its client's now (leased ones included)."""
    async with transaction(runtime.sessions) as session:
        offsets = await claims.clients_with_clock_offset(session)
        return await claims.count_due(session, now=runtime.clock.now(), offsets=offsets)


async def run_renewals(
    runtime: Runtime, identity: str, *, progress: Progress | None = None
) -> RenewalSummary:
    """The worker's renewal pass (`registered_passes`): renew, retry and expire what is due."""
    summary = await RenewalPass(runtime, identity, progress=progress).run()
    if summary.claimed:
        log.info("renewal pass", extra=summary.as_dict())
    return summary
