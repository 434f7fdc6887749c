"""The renewal state machine of one subscription (billing/domain/renewal.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from billing.domain.calendar import Schedule, due_at
from billing.domain.grace import Episode, GracePolicy
from billing.domain.renewal import (
    EXPIRED,
    RENEWED,
    ChargePeriod,
    CheckDeadline,
    Expire,
    RenewalState,
    Terms,
    due_step,
    expired,
    grace_deadline_reached,
    new_default_card,
    renewal_failed,
    renewed,
)

SCHEDULE = Schedule("anniversary", 1, date(2026, 1, 31), "America/New_York")
POLICY = GracePolicy(attempts=3, interval_hours=24, grace_days=None)
TERMS = Terms(schedule=SCHEDULE, cycles=None, policy=POLICY)


def enrolled(period_index: int = 0) -> RenewalState:
    return RenewalState(
        status="active",
        renewal_status="current",
        period_index=period_index,
        cycles_paid=period_index + 1,
        current_period_start=due_at(SCHEDULE, period_index),
        current_period_end=due_at(SCHEDULE, period_index + 1),
        next_attempt_at=due_at(SCHEDULE, period_index + 1),
    )


def test_nothing_is_due_before_next_attempt_at() -> None:
    state = enrolled()
    assert state.next_attempt_at is not None
    assert due_step(state, TERMS, state.next_attempt_at - timedelta(microseconds=1)) is None
    assert due_step(replace(state, status="cancelled"), TERMS, state.next_attempt_at) is None


def test_the_next_period_is_due_at_its_boundary() -> None:
    state = enrolled()
    step = due_step(state, TERMS, datetime(2026, 3, 10, tzinfo=UTC))  # late worker
    assert step == ChargePeriod(k=1, period_start=due_at(SCHEDULE, 1), attempt=1, retry=False)


def test_a_renewal_advances_from_the_schedule_not_from_the_payment() -> None:
    state = enrolled()
    step = ChargePeriod(k=1, period_start=due_at(SCHEDULE, 1), attempt=1, retry=False)
    result = renewed(state, TERMS, step)
    assert result.events == (RENEWED,)
    assert result.state.period_index == 1
    assert result.state.cycles_paid == 2
    assert result.state.current_period_start == due_at(SCHEDULE, 1)  # Feb 28, whenever it was paid
    assert result.state.next_attempt_at == due_at(SCHEDULE, 2)  # Mar 31: the anchor day is back


def test_fixed_term_expires_instead_of_charging() -> None:
    terms = replace(TERMS, cycles=2)
    state = enrolled(period_index=1)
    assert due_step(state, terms, due_at(SCHEDULE, 2)) == Expire()
    result = expired(state, due_at(SCHEDULE, 2) + timedelta(days=1))
    assert result.events == (EXPIRED,)
    assert (result.state.status, result.state.ended_at, result.state.next_attempt_at) == (
        "expired",
        due_at(SCHEDULE, 2),
        None,
    )


def test_a_failure_starts_an_episode_and_retries_are_attempts_two_and_three() -> None:
    state = enrolled()
    failed_at = due_at(SCHEDULE, 1)
    first = renewal_failed(state, TERMS, failed_at, hard=False)
    assert first.events == ("subscription.payment_failed",)
    assert first.state.renewal_status == "in_grace"
    assert first.state.next_attempt_at == failed_at + timedelta(hours=24)
    retry = due_step(first.state, TERMS, failed_at + timedelta(hours=24))
    assert retry == ChargePeriod(k=1, period_start=failed_at, attempt=2, retry=True)
    second = renewal_failed(first.state, TERMS, failed_at + timedelta(hours=24), hard=False)
    third = renewal_failed(second.state, TERMS, failed_at + timedelta(hours=48), hard=False)
    assert third.events == ("subscription.inactive",)
    assert third.state.status == "inactive"
    assert third.state.episode is not None
    assert third.state.episode.attempts_made == 3


def test_recovery_pays_the_period_that_was_due() -> None:
    failed = renewal_failed(enrolled(), TERMS, due_at(SCHEDULE, 1), hard=False).state
    step = due_step(failed, TERMS, due_at(SCHEDULE, 1) + timedelta(hours=24))
    assert isinstance(step, ChargePeriod)
    result = renewed(failed, TERMS, step)
    assert result.events == (RENEWED, "subscription.recovered")
    assert result.state.period_index == 1
    assert result.state.episode is None


def test_waiting_for_the_window_to_close() -> None:
    policy = GracePolicy(attempts=1, interval_hours=24, grace_days=5)
    failed_at = due_at(SCHEDULE, 1)
    state = renewal_failed(enrolled(), replace(TERMS, policy=policy), failed_at, hard=False).state
    assert state.next_attempt_at == failed_at + timedelta(days=5)
    assert due_step(state, TERMS, failed_at + timedelta(days=5)) == CheckDeadline()
    assert grace_deadline_reached(state, failed_at + timedelta(days=5)).state.status == "inactive"


def test_a_new_card_in_grace_retries_now_and_outside_grace_does_nothing() -> None:
    now = due_at(SCHEDULE, 1) + timedelta(hours=3)
    assert new_default_card(enrolled(), now) is None
    state = renewal_failed(enrolled(), TERMS, due_at(SCHEDULE, 1), hard=True).state
    assert state.status == "inactive"  # no window: a hard decline ends it
    soft = renewal_failed(enrolled(), TERMS, due_at(SCHEDULE, 1), hard=False).state
    moved = new_default_card(soft, now)
    assert moved is not None
    assert moved.state.next_attempt_at == now
    assert moved.state.episode == replace(soft.episode, next_attempt_at=now)  # type: ignore[type-var]


@given(st.integers(0, 40), st.integers(0, 24 * 60))
def test_late_payment_never_moves_the_schedule(k: int, minutes_late: int) -> None:
    state = enrolled(period_index=k)
    late = due_at(SCHEDULE, k + 1) + timedelta(minutes=minutes_late)
    step = due_step(state, TERMS, late)
    assert isinstance(step, ChargePeriod)
    after = renewed(state, TERMS, step).state
    assert after.current_period_start == due_at(SCHEDULE, k + 1)
    assert after.next_attempt_at == due_at(SCHEDULE, k + 2)


def test_an_episode_snapshot_is_used_for_running_episodes() -> None:
    failed_at = due_at(SCHEDULE, 1)
    state = renewal_failed(enrolled(), TERMS, failed_at, hard=False).state
    changed = replace(TERMS, policy=GracePolicy(attempts=10, interval_hours=1))
    second = renewal_failed(state, changed, failed_at + timedelta(hours=24), hard=False).state
    assert isinstance(second.episode, Episode)
    assert second.episode.policy == POLICY
    assert second.next_attempt_at == failed_at + timedelta(hours=48)
