"""One subscription over time: the calendar and grace rules driven by random events.

The machine plays a small, punctual-or-late renewal worker against a fake clock: it charges
each period when due, follows the grace decisions, and lets the test throw approvals,
declines, hard declines, processor timeouts (resolved later either way), card changes,
config edits, cancellations and clock jumps at it. Alongside, it keeps its own plain
bookkeeping of the episode (when it started, how many attempts failed, whether the last
was hard) so the invariants check the rules against SPEC §5 rather than against the code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from billing.domain.calendar import (
    Schedule,
    anchor_date,
    due_at,
    is_beyond_term,
    local_date,
    term_cycles,
    term_end,
)
from billing.domain.grace import (
    INACTIVE,
    PAYMENT_FAILED,
    RECOVERED,
    Decision,
    Episode,
    GracePolicy,
    on_deadline,
    on_new_default_card,
    on_renewal_failed,
    on_retry_failed,
    on_success,
)
from tests.clock import FixedClock

ZONES = ["America/Guatemala", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham"]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

policies = st.builds(
    GracePolicy,
    attempts=st.sampled_from([1, 2, 3, 4, 5]),
    interval_hours=st.sampled_from([1, 6, 24, 48]),
    grace_days=st.sampled_from([None, 0, 1, 3, 7, 10]),
    stop_on_hard_decline=st.booleans(),
)
card_behaviours = st.sampled_from(["approve", "decline", "hard"])


@dataclass
class Charge:
    at: datetime
    period: int
    attempt: int
    trigger: str  # renewal | retry | card | enrolment
    outcome: str  # approve | decline | hard | unknown (until resolved)


@dataclass
class ModelEpisode:
    """The test's own account of the running episode."""

    started_at: datetime
    policy: GracePolicy
    failures: int = 0
    last_hard: bool = False
    last_failure_at: datetime | None = None

    def no_more_scheduled(self) -> bool:
        return self.failures >= self.policy.attempts or (self.last_hard and self.policy.stop_on_hard_decline)

    def window_open(self, at: datetime) -> bool:
        days = self.policy.grace_days
        return days is not None and at < self.started_at + timedelta(days=days)


class SubscriptionLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.charges: list[Charge] = []
        self.succeeded: Counter[int] = Counter()
        self.events: list[str] = []
        self.renewal_dues: list[datetime] = []
        self.episodes_started = 0
        self.episodes_recovered = 0
        self.charges_when_ended: int | None = None
        self.pending: Charge | None = None
        self.next_outcomes: list[str] = []
        self.card_retry = False
        self.last_action_at = EPOCH

    # --- enrolment ---------------------------------------------------------------------

    @initialize(
        kind=st.sampled_from(["interval", "fixedDay", "anniversary"]),
        every_days=st.integers(1, 40),
        every_months=st.sampled_from([1, 1, 2, 3]),
        day=st.integers(1, 31),
        tz=st.sampled_from(ZONES),
        start_minutes=st.integers(0, 2 * 365 * 24 * 60),
        trial_days=st.sampled_from([0, 0, 0, 7, 14, 30]),
        term=st.sampled_from([None, None, None, 1, 2, 3, 6, "no-auto-renewal"]),
        policy=policies,
        card=card_behaviours,
    )
    def enrol(
        self,
        kind: str,
        every_days: int,
        every_months: int,
        day: int,
        tz: str,
        start_minutes: int,
        trial_days: int,
        term: int | str | None,
        policy: GracePolicy,
        card: str,
    ) -> None:
        start = EPOCH + timedelta(minutes=start_minutes)
        self.clock = FixedClock(start)
        self.last_action_at = start
        anchor = anchor_date(local_date(start, tz), trial_days)
        if kind == "interval":
            self.schedule = Schedule("interval", every_days, anchor, tz)
        elif kind == "anniversary":
            self.schedule = Schedule("anniversary", every_months, anchor, tz)
        else:
            self.schedule = Schedule("fixedDay", every_months, anchor, tz, day=day)
        if isinstance(term, str):
            self.cycles = term_cycles(None, auto_renewal=False)
        else:
            self.cycles = term_cycles(term, auto_renewal=True)
        self.policy = policy
        # The card verified at enrolment; how it behaves on later charges is up to the test.
        self.card = card
        self.status = "active"
        self.renewal_status = "current"
        self.episode: Episode | None = None
        self.model: ModelEpisode | None = None
        if trial_days:
            self.next_period = 0  # first charge at trial end
            assert due_at(self.schedule, 0) > start
        else:
            # verify-card charges the first period during the call; a decline creates nothing.
            assert due_at(self.schedule, 0) <= start
            self.charges.append(Charge(start, 0, 1, "enrolment", "approve"))
            self.succeeded[0] += 1
            self.next_period = 1

    # --- the worker --------------------------------------------------------------------

    def _wake_at(self) -> datetime | None:
        if self.status != "active" or self.pending is not None:
            return None
        if self.episode is not None:
            return self.episode.wake_at
        if is_beyond_term(self.next_period, self.cycles):
            return term_end(self.schedule, self.cycles)
        return due_at(self.schedule, self.next_period)

    def _run_due(self, until: datetime, punctual: bool) -> None:
        for _ in range(5000):
            wake = self._wake_at()
            if wake is None or wake > until:
                return
            # A punctual worker acts when work falls due, but never before its previous action
            # (catching up on a period that fell due during a long grace episode).
            self._process(max(wake, self.last_action_at) if punctual else until)
        raise AssertionError("the worker never ran out of due work")

    def _process(self, at: datetime) -> None:
        assert at >= self.last_action_at
        self.last_action_at = at
        if self.episode is not None:
            if self.episode.next_attempt_at is not None:
                self._charge(at, "card" if self.card_retry else "retry")
            else:
                self._apply_failure_side(on_deadline(self.episode, at), at)
        elif is_beyond_term(self.next_period, self.cycles):
            assert self.cycles is not None
            assert sum(self.succeeded.values()) == self.cycles
            assert at >= due_at(self.schedule, self.cycles)
            self._end("expired")
        else:
            self._charge(at, "renewal")

    def _charge(self, at: datetime, trigger: str) -> None:
        assert self.status == "active"
        period = self.next_period
        if trigger == "renewal":
            assert at >= due_at(self.schedule, period), "charged before the period was due"
            if period > 0 and at >= due_at(self.schedule, period + 1):
                event("catch-up renewal of an overdue period")
            self.renewal_dues.append(due_at(self.schedule, period))
        if trigger == "retry":
            assert self.model is not None
            assert self.model.last_failure_at is not None
            assert at >= self.model.last_failure_at + self.model.policy.interval, "retried too soon"
            assert not self.model.no_more_scheduled(), "scheduled retry after the policy said stop"
        self.card_retry = False
        attempt = 1 if self.episode is None else self.episode.attempts_made + 1
        outcome = self.next_outcomes.pop(0) if self.next_outcomes else self.card
        if outcome == "timeout":
            outcome = "unknown"
        charge = Charge(at, period, attempt, trigger, outcome)
        self.charges.append(charge)
        if outcome == "unknown":
            self.pending = charge  # not a decline: hold everything until it is resolved
        else:
            self._settle(charge, at)

    def _settle(self, charge: Charge, at: datetime) -> None:
        if charge.outcome == "approve":
            self.succeeded[charge.period] += 1
            if self.status == "active":
                decision = on_success(self.episode)
                if self.episode is not None:
                    event(f"recovered by a {charge.trigger} charge")
                    self.episodes_recovered += 1
                    assert decision.events == (RECOVERED,)
                self._take(decision)
                self.model = None
                self.next_period = charge.period + 1
            return
        if self.status != "active":
            return  # a late decline on a cancelled subscription changes nothing
        hard = charge.outcome == "hard"
        if self.episode is None:
            self.model = ModelEpisode(started_at=at, policy=self.policy)
            self.episodes_started += 1
            decision = on_renewal_failed(at, self.policy, hard)
        else:
            decision = on_retry_failed(self.episode, at, hard)
        assert self.model is not None
        self.model.failures += 1
        self.model.last_hard = hard
        self.model.last_failure_at = at
        if self.model.no_more_scheduled():
            assert decision.next_attempt_at is None
        else:
            assert decision.next_attempt_at == at + self.model.policy.interval
        self._apply_failure_side(decision, at)

    def _apply_failure_side(self, decision: Decision, at: datetime) -> None:
        """A failure or deadline decision: inactive exactly when SPEC §5 says so."""
        assert self.model is not None
        should_end = self.model.no_more_scheduled() and not self.model.window_open(at)
        assert (decision.status == "inactive") == should_end, (decision, self.model, at)
        self._take(decision)
        if decision.status == "inactive":
            self._end("inactive")

    def _take(self, decision: Decision) -> None:
        self.status = decision.status
        self.renewal_status = decision.renewal_status
        self.episode = decision.episode
        self.events.extend(decision.events)

    def _end(self, status: str) -> None:
        event(f"ended {status}")
        self.status = status
        self.episode = None
        self.charges_when_ended = len(self.charges)

    # --- the world ---------------------------------------------------------------------

    def _time_passes(self, delta: timedelta, punctual: bool) -> None:
        """The clock jumps; a punctual worker acts at each due instant, a late one only now.

        A late worker's sweep also looks at the row in grace whether or not it is due, which
        must never end the episode early.
        """
        until = self.clock.now() + delta
        self._run_due(until, punctual)
        if not punctual and self.status == "active" and self.episode is not None and self.pending is None:
            self.last_action_at = until
            self._apply_failure_side(on_deadline(self.episode, until), until)
        self.clock.set(until)

    # Two clock rules so that time moves on in about a third of the steps.
    # Sampled rather than drawn from a range: hypothesis favours range ends, and one-minute
    # steps would make a renewal a rare sight.
    @rule(
        delta=st.sampled_from([timedelta(minutes=m) for m in (1, 30, 60, 361, 720, 1440, 2000, 4320)]),
        punctual=st.booleans(),
    )
    def hours_pass(self, delta: timedelta, punctual: bool) -> None:
        self._time_passes(delta, punctual)

    @rule(
        delta=st.sampled_from([timedelta(days=d, minutes=7) for d in (4, 7, 10, 15, 29, 31, 45)]),
        punctual=st.booleans(),
    )
    def weeks_pass(self, delta: timedelta, punctual: bool) -> None:
        self._time_passes(delta, punctual)

    @rule(outcome=st.sampled_from(["approve", "decline", "hard", "timeout"]), only_next=st.booleans())
    def processor_will(self, outcome: str, only_next: bool) -> None:
        """The next charge (or, from now on, every charge on this card) approves, declines,
        is hard-declined (card reported stolen) or times out (outcome unknown)."""
        if only_next or outcome == "timeout":
            self.next_outcomes.append(outcome)
        else:
            self.card = outcome

    @precondition(lambda self: self.pending is not None)
    @rule(outcome=st.sampled_from(["approve", "decline", "hard"]))
    def unknown_charge_resolves(self, outcome: str) -> None:
        assert self.pending is not None
        now = self.clock.now()
        charge, self.pending = self.pending, None
        self.last_action_at = now
        charge.outcome = outcome
        self._settle(charge, now)
        self._run_due(now, punctual=True)

    @rule(behaviour=card_behaviours)
    def new_default_card(self, behaviour: str) -> None:
        self.card = behaviour
        self.next_outcomes.clear()  # those were about the old card
        if self.status != "active" or self.episode is None or self.pending is not None:
            return
        now = self.clock.now()
        assert self.model is not None
        may_retry = self.model.window_open(now) or self.model.failures < self.model.policy.attempts
        self.last_action_at = now
        decision = on_new_default_card(self.episode, now)
        event(f"new card during grace, retry allowed: {may_retry}")
        if may_retry:
            assert decision.status == "active"
            assert decision.next_attempt_at == now
            self.card_retry = True
            self._take(decision)
            self._run_due(now, punctual=True)
        else:
            self._apply_failure_side(decision, now)

    @precondition(lambda self: self.status == "active" and self.episode is not None and self.pending is None)
    @rule()
    def worker_looks_in_early(self) -> None:
        """A sweep may look at an in-grace row before it is due (an expired lease, a manual
        re-run): that must never end the episode early."""
        assert self.episode is not None
        now = self.clock.now()
        self.last_action_at = now
        self._apply_failure_side(on_deadline(self.episode, now), now)

    @rule(policy=policies)
    def operator_edits_config(self, policy: GracePolicy) -> None:
        """New episodes take the new policy; a running one keeps its snapshot."""
        self.policy = policy

    @precondition(lambda self: self.status == "active")
    @rule(really=st.sampled_from([True] + [False] * 19))
    def merchant_cancels(self, really: bool) -> None:
        # One draw in twenty cancels: a cancellation ends the story, so keep it rare.
        if really:
            self._end("cancelled")

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def at_most_one_success_per_period(self) -> None:
        assert all(count <= 1 for count in self.succeeded.values()), self.succeeded

    @invariant()
    def periods_are_paid_in_order_without_gaps(self) -> None:
        paid = sorted(self.succeeded)
        assert paid == list(range(len(paid)))
        if self.cycles is not None:
            assert len(paid) <= self.cycles

    @invariant()
    def attempt_numbers_are_unique_per_period(self) -> None:
        """They are part of the idempotency key `{sub}:{period_start}:{attempt}`."""
        keys = [(charge.period, charge.attempt) for charge in self.charges]
        assert len(keys) == len(set(keys)), keys

    @invariant()
    def nothing_is_charged_after_the_end(self) -> None:
        if self.status != "active":
            assert self.charges_when_ended is not None
            assert len(self.charges) == self.charges_when_ended

    @invariant()
    def renewal_dates_strictly_increase(self) -> None:
        assert all(a < b for a, b in zip(self.renewal_dues, self.renewal_dues[1:], strict=False))

    @invariant()
    def grace_status_matches_the_episode(self) -> None:
        if self.status == "active":
            assert (self.renewal_status == "in_grace") == (self.episode is not None)
            if self.episode is not None and self.pending is None:
                assert self.episode.wake_at is not None, "in grace with nothing left to wake for"
            if self.episode is not None:
                assert self.model is not None
                assert self.episode.policy == self.model.policy, "the episode lost its policy snapshot"

    @invariant()
    def events_tell_the_story(self) -> None:
        assert self.events.count(PAYMENT_FAILED) == self.episodes_started
        assert self.events.count(RECOVERED) == self.episodes_recovered
        assert self.events.count(INACTIVE) == (1 if self.status == "inactive" else 0)


SubscriptionLifecycle.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestSubscriptionLifecycle = SubscriptionLifecycle.TestCase
