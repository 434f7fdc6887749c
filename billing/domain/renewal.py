"""The renewal state machine of one subscription, as pure functions.

The worker asks `due_step` what a subscription owes at a given instant, performs it (a
charge, an expiry, a grace deadline check) and asks `renewed`, `renewal_failed`,
`expired` or `grace_deadline_reached` for the state to store and the events to write.
Schedule facts come from `calendar` (boundary k of the anchored schedule, never the last
payment) and grace facts from `grace` (the episode snapshot). Nothing here reads a clock
or a database.

Schedule semantics (shared with enrolment): the subscription has paid period
`period_index` (-1 during a trial), which runs from boundary `period_index` to boundary
`period_index + 1`. The next renewal pays period k = `period_index + 1`, due at boundary k.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from billing.domain.calendar import Schedule, due_at, is_beyond_term, next_renewal_after
from billing.domain.grace import (
    Decision,
    Episode,
    GracePolicy,
    RenewalStatus,
    on_deadline,
    on_new_default_card,
    on_renewal_failed,
    on_retry_failed,
    on_success,
)

SubscriptionStatus = Literal["active", "cancelled", "inactive", "expired"]
CatchUp = Literal["skip", "charge"]

RENEWED: Final = "subscription.renewed"
PERIODS_SKIPPED: Final = "subscription.periods_skipped"
EXPIRED: Final = "subscription.expired"


@dataclass(frozen=True, slots=True)
class RenewalState:
    """The renewal-relevant part of a subscription row.

    `next_attempt_at` is when the worker must next look at the subscription: the next
    renewal, a grace retry, the end of the grace window or the end of a fixed term.
    `episode` is the running grace episode (`renewal_status == "in_grace"`), else None; on an
    `inactive` subscription it is the episode that ended it, kept for the record.
    """

    status: SubscriptionStatus
    renewal_status: RenewalStatus
    period_index: int
    cycles_paid: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    next_attempt_at: datetime | None
    episode: Episode | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Terms:
    """What the plan says about renewing: the anchored schedule, the term and the grace policy.

    `cycles` is the number of paid cycles of a fixed term (`calendar.term_cycles`), None for
    "until cancelled". `policy` is the policy in force for a *new* episode; a running
    episode keeps its snapshot.
    """

    schedule: Schedule
    cycles: int | None
    policy: GracePolicy
    # After a late payment whose next period is already over: "skip" resumes at the next boundary
    # still ahead (the overdue periods are not charged), "charge" charges them one at a time,
    # each `policy.interval` after the previous one.
    catch_up: CatchUp = "skip"


@dataclass(frozen=True, slots=True)
class ChargePeriod:
    """Charge period `k` (due at `period_start`), attempt `attempt` of that period."""

    k: int
    period_start: datetime
    attempt: int
    retry: bool


@dataclass(frozen=True, slots=True)
class Expire:
    """The fixed term is over: the subscription becomes `expired`."""


@dataclass(frozen=True, slots=True)
class CheckDeadline:
    """In grace with no retry due: the grace window may be over."""


Step = ChargePeriod | Expire | CheckDeadline


@dataclass(frozen=True, slots=True)
class Transition:
    """The state to store and the subscription events to write, in order."""

    state: RenewalState
    events: tuple[str, ...] = ()


def due_step(state: RenewalState, terms: Terms, now: datetime) -> Step | None:
    """What the subscription owes at `now`, or None when nothing is due."""
    if state.status != "active" or state.next_attempt_at is None or state.next_attempt_at > now:
        return None
    k = state.period_index + 1
    episode = state.episode
    if episode is None:
        if is_beyond_term(k, terms.cycles):
            return Expire()
        period_start = due_at(terms.schedule, k)
        if period_start > now:
            # Never charge a period before it starts, whatever made the row due early.
            return None
        return ChargePeriod(k=k, period_start=period_start, attempt=1, retry=False)
    if episode.next_attempt_at is not None and episode.next_attempt_at <= now:
        return ChargePeriod(
            k=k, period_start=due_at(terms.schedule, k), attempt=episode.attempts_made + 1, retry=True
        )
    return CheckDeadline()


def renewed(state: RenewalState, terms: Terms, step: ChargePeriod, now: datetime | None = None) -> Transition:
    """Period `step.k` was paid at `now`: advance from the schedule (no drift), back to `current`.

    The next look is boundary k+1: another renewal, or the end of a fixed term. When the payment
    ends a grace episode and that boundary is already past (the episode outlasted the next
    period), `terms.catch_up`
    decides: "skip" moves on to the period in progress without charging the overdue ones
    (`subscription.periods_skipped`), "charge" charges the next period one retry interval later.
    Never two periods in the same second.
    """
    decision = on_success(state.episode)
    period_end = due_at(terms.schedule, step.k + 1)
    period_index = step.k
    current_start = step.period_start
    next_at = period_end
    events: tuple[str, ...] = (RENEWED, *decision.events)
    overdue = now is not None and period_end <= now and not is_beyond_term(step.k + 1, terms.cycles)
    # Only a payment that ends a grace episode catches up this way: a worker that was merely late
    # (down for a day) charges every period it missed, in order, as the schedule says.
    if overdue and now is not None and state.episode is not None:
        if terms.catch_up == "skip":
            resume, _ = next_renewal_after(terms.schedule, now)
            if terms.cycles is not None:
                resume = min(resume, terms.cycles)
            period_index = resume - 1
            current_start = due_at(terms.schedule, period_index)
            next_at = period_end = due_at(terms.schedule, resume)
            events = (*events, PERIODS_SKIPPED)
        else:
            next_at = now + terms.policy.interval
    new = replace(
        state,
        status="active",
        renewal_status="current",
        period_index=period_index,
        cycles_paid=state.cycles_paid + 1,
        current_period_start=current_start,
        current_period_end=period_end,
        next_attempt_at=next_at,
        episode=None,
    )
    return Transition(new, events)


def renewal_failed(state: RenewalState, terms: Terms, now: datetime, *, hard: bool) -> Transition:
    """The attempt for the due period failed at `now`: start or continue the grace episode."""
    if state.episode is None:
        decision = on_renewal_failed(now, terms.policy, hard, tz=terms.schedule.tz)
        before = Episode(started_at=now, attempts_made=0, policy=terms.policy, next_attempt_at=None)
    else:
        decision = on_retry_failed(state.episode, now, hard, tz=terms.schedule.tz)
        before = state.episode
    # An episode that ends here is kept on the row (with this attempt counted) for the record.
    last = replace(before, attempts_made=before.attempts_made + 1, next_attempt_at=None)
    return _within_term(_apply(state, decision, now, last_episode=last), terms)


def _last_cycle_end(state: RenewalState, terms: Terms) -> datetime | None:
    """The end of the term when the period being charged is a fixed term's last cycle, else None."""
    if terms.cycles is None or state.period_index + 1 != terms.cycles - 1:
        return None
    return due_at(terms.schedule, terms.cycles)


def _within_term(transition: Transition, terms: Terms) -> Transition:
    """A failing last cycle of a fixed term retries only until the term ends (then `expired`)."""
    state = transition.state
    term_end = _last_cycle_end(state, terms)
    if term_end is None or state.status != "active" or state.episode is None:
        return transition
    episode = state.episode
    if episode.next_attempt_at is not None and episode.next_attempt_at >= term_end:
        episode = replace(episode, next_attempt_at=None)
    wake = episode.wake_at
    next_at = term_end if wake is None or wake > term_end else wake
    return Transition(replace(state, episode=episode, next_attempt_at=next_at), transition.events)


def new_default_card(state: RenewalState, now: datetime) -> Transition | None:
    """A new default payment method while in grace: retry at once (None when not in grace)."""
    if state.status != "active" or state.episode is None:
        return None
    return _apply(state, on_new_default_card(state.episode, now), now)


def grace_deadline_reached(state: RenewalState, now: datetime, terms: Terms | None = None) -> Transition:
    """The worker woke in grace with no retry due: `inactive` once the policy says so.

    In a fixed term's last cycle the term's end comes first: at that instant the subscription
    is `expired`, its last cycle unpaid (the episode stays on the row for the record).
    """
    assert state.episode is not None, "only subscriptions in grace have a deadline"
    term_end = None if terms is None else _last_cycle_end(state, terms)
    if term_end is not None and now >= term_end:
        new = replace(
            state,
            status="expired",
            renewal_status="ended",
            next_attempt_at=None,
            episode=replace(state.episode, next_attempt_at=None),
            ended_at=term_end,
        )
        return Transition(new, (EXPIRED,))
    return _apply(state, on_deadline(state.episode, now), now)


def expired(state: RenewalState, now: datetime) -> Transition:
    """The fixed term ended: `expired` (terminal) at the end of the last paid period."""
    ended = state.current_period_end or now
    new = replace(
        state, status="expired", renewal_status="ended", next_attempt_at=None, episode=None, ended_at=ended
    )
    return Transition(new, (EXPIRED,))


def _apply(
    state: RenewalState, decision: Decision, now: datetime, *, last_episode: Episode | None = None
) -> Transition:
    if decision.status == "inactive":
        # `episode` stays as the record of how the episode ended; `status` is what ends it.
        ended_episode = last_episode or state.episode
        if ended_episode is not None:
            ended_episode = replace(ended_episode, next_attempt_at=None)
        new = replace(
            state,
            status="inactive",
            renewal_status=decision.renewal_status,
            next_attempt_at=None,
            episode=ended_episode,
            ended_at=now,
        )
        return Transition(new, decision.events)
    new = replace(
        state,
        renewal_status=decision.renewal_status,
        next_attempt_at=decision.wake_at,
        episode=decision.episode,
    )
    return Transition(new, decision.events)
