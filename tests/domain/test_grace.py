"""Grace policies and the episode rules, one test per rule (SPEC §5)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.errors import BillingError
from billing.domain.grace import (
    INACTIVE,
    PAYMENT_FAILED,
    RECOVERED,
    Decision,
    Episode,
    GracePolicy,
    PlanGraceFields,
    on_deadline,
    on_new_default_card,
    on_renewal_failed,
    on_retry_failed,
    on_success,
    resolve_policy,
    timeline,
)

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "grace-policies.md"


def _fail_all(policy: GracePolicy, start: datetime = T0) -> list[tuple[datetime, Decision]]:
    """Drive an episode where every scheduled attempt fails softly, punctually."""
    return [(at, decision) for at, _, decision in _fail_all_steps(policy, start)]


def _fail_all_steps(policy: GracePolicy, start: datetime) -> list[tuple[datetime, str, Decision]]:
    """Like `_fail_all`, also saying whether each step was a charge attempt or a deadline."""
    decision = on_renewal_failed(start, policy, hard=False)
    history = [(start, "attempt", decision)]
    while decision.status == "active":
        episode = decision.episode
        assert episode is not None
        wake = episode.wake_at
        assert wake is not None
        if episode.next_attempt_at is not None:
            decision = on_retry_failed(episode, wake, hard=False)
            history.append((wake, "attempt", decision))
        else:
            decision = on_deadline(episode, wake)
            history.append((wake, "deadline", decision))
    return history


# --- policy values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"attempts": 2.0}, "attempts"),
        ({"attempts": 3, "interval_hours": 0}, "interval_hours"),
        ({"attempts": 3, "interval_hours": -1}, "interval_hours"),
        ({"attempts": 3, "interval_hours": float("nan")}, "interval_hours"),
        ({"attempts": 3, "interval_hours": float("inf")}, "interval_hours"),
        ({"attempts": 3, "grace_days": -1}, "grace_days"),
        ({"attempts": 3, "stop_on_hard_decline": "yes"}, "stop_on_hard_decline"),
    ],
)
def test_bad_policy_values_name_the_key(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(BillingError) as excinfo:
        GracePolicy(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.code == "7000"
    assert excinfo.value.field == field


def test_policy_defaults() -> None:
    policy = GracePolicy(attempts=3)
    assert policy.interval == timedelta(hours=24)
    assert policy.grace_days is None
    assert policy.stop_on_hard_decline is True
    assert GracePolicy(attempts=2, interval_hours=0.5).interval == timedelta(minutes=30)


@pytest.mark.parametrize(
    "policy",
    [
        GracePolicy(attempts=4),
        GracePolicy(attempts=1, interval_hours=0.5, grace_days=0, stop_on_hard_decline=False),
        GracePolicy(attempts=6, interval_hours=48, grace_days=14),
    ],
)
def test_snapshot_round_trips_through_json(policy: GracePolicy) -> None:
    stored = json.dumps(policy.to_snapshot())
    assert GracePolicy.from_snapshot(json.loads(stored)) == policy


def test_snapshot_that_we_did_not_write_is_refused() -> None:
    snapshot = GracePolicy(attempts=3).to_snapshot()
    with pytest.raises(ValueError, match="missing"):
        GracePolicy.from_snapshot({k: v for k, v in snapshot.items() if k != "attempts"})
    with pytest.raises(ValueError, match="unexpected"):
        GracePolicy.from_snapshot({**snapshot, "interval": 24})
    with pytest.raises(BillingError):
        GracePolicy.from_snapshot({**snapshot, "attempts": 0})


def test_running_episode_keeps_its_snapshot_when_config_changes() -> None:
    """The episode carries its own policy; later retries never look at the config again."""
    started = on_renewal_failed(T0, GracePolicy(attempts=3, interval_hours=24), hard=False)
    assert started.episode is not None
    restored = Episode(
        started_at=started.episode.started_at,
        attempts_made=started.episode.attempts_made,
        policy=GracePolicy.from_snapshot(started.episode.policy.to_snapshot()),
        next_attempt_at=started.episode.next_attempt_at,
    )
    # Whatever the operator now says (say attempts = 1), the stored episode schedules attempt 3.
    decision = on_retry_failed(restored, T0 + 24 * H, hard=False)
    assert decision.next_attempt_at == T0 + 48 * H


# --- precedence ------------------------------------------------------------------------

DEFAULT = GracePolicy(attempts=4, interval_hours=24, grace_days=None, stop_on_hard_decline=True)
PATIENT = GracePolicy(attempts=6, interval_hours=48, grace_days=14, stop_on_hard_decline=False)


def test_default_applies_when_plan_sets_nothing() -> None:
    assert resolve_policy(PlanGraceFields(), None, DEFAULT) == DEFAULT


def test_named_policy_replaces_the_default_as_a_whole() -> None:
    assert resolve_policy(PlanGraceFields(), PATIENT, DEFAULT) == PATIENT


def test_plan_fields_override_one_attribute_each() -> None:
    resolved = resolve_policy(PlanGraceFields(daily_attempts=2), PATIENT, DEFAULT)
    assert resolved == GracePolicy(attempts=2, interval_hours=48, grace_days=14, stop_on_hard_decline=False)
    resolved = resolve_policy(PlanGraceFields(interval_attempt=12, grace_days=0), None, DEFAULT)
    assert resolved == GracePolicy(attempts=4, interval_hours=12, grace_days=0, stop_on_hard_decline=True)


def test_plan_grace_days_zero_is_a_value_not_unset() -> None:
    assert resolve_policy(PlanGraceFields(grace_days=0), PATIENT, DEFAULT).grace_days == 0


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        (PlanGraceFields(daily_attempts=0), "dailyAttempts"),
        (PlanGraceFields(interval_attempt=0), "intervalAttempt"),
        (PlanGraceFields(grace_days=-2), "graceDays"),
    ],
)
def test_bad_plan_field_is_reported_under_its_plan_name(fields: PlanGraceFields, name: str) -> None:
    with pytest.raises(BillingError) as excinfo:
        resolve_policy(fields, None, DEFAULT)
    assert excinfo.value.field == name
    assert name in excinfo.value.detail


# --- the episode rules -----------------------------------------------------------------


def test_first_failure_starts_an_episode() -> None:
    policy = GracePolicy(attempts=3, interval_hours=24)
    decision = on_renewal_failed(T0, policy, hard=False)
    assert decision.status == "active"
    assert decision.renewal_status == "in_grace"
    assert decision.events == (PAYMENT_FAILED,)
    assert decision.episode == Episode(
        started_at=T0, attempts_made=1, policy=policy, next_attempt_at=T0 + 24 * H
    )
    assert decision.next_attempt_at == decision.wake_at == T0 + 24 * H


def test_retries_every_interval_until_attempts_run_out_then_inactive() -> None:
    history = _fail_all(GracePolicy(attempts=3, interval_hours=24))
    assert [at for at, _ in history] == [T0, T0 + 24 * H, T0 + 48 * H]
    last = history[-1][1]
    assert last.status == "inactive"
    assert last.events == (INACTIVE,)
    assert last.episode is None
    assert [d.events for _, d in history[1:-1]] == [()]


def test_single_attempt_without_grace_is_inactive_at_once() -> None:
    decision = on_renewal_failed(T0, GracePolicy(attempts=1), hard=False)
    assert decision.status == "inactive"
    assert decision.events == (PAYMENT_FAILED, INACTIVE)


def test_grace_days_keep_the_subscription_in_grace_after_attempts_run_out() -> None:
    policy = GracePolicy(attempts=2, interval_hours=24, grace_days=7)
    history = _fail_all(policy)
    assert [at for at, _ in history] == [T0, T0 + D, T0 + 7 * D]
    exhausted = history[1][1]
    assert exhausted.status == "active"
    assert exhausted.renewal_status == "in_grace"
    assert exhausted.next_attempt_at is None
    assert exhausted.wake_at == T0 + 7 * D
    assert history[-1][1].status == "inactive"


def test_deadline_before_the_window_ends_changes_nothing() -> None:
    decision = on_renewal_failed(T0, GracePolicy(attempts=1, grace_days=3), hard=False)
    assert decision.episode is not None
    early = on_deadline(decision.episode, T0 + 3 * D - timedelta(seconds=1))
    assert early.status == "active"
    assert early.episode == decision.episode
    assert early.events == ()
    assert on_deadline(decision.episode, T0 + 3 * D).status == "inactive"


def test_deadline_while_a_retry_is_scheduled_changes_nothing() -> None:
    decision = on_renewal_failed(T0, GracePolicy(attempts=5, grace_days=1), hard=False)
    assert decision.episode is not None
    later = on_deadline(decision.episode, T0 + 2 * D)
    assert later.status == "active"
    assert later.episode == decision.episode


def test_retries_outlast_a_short_window() -> None:
    history = _fail_all(GracePolicy(attempts=4, interval_hours=24, grace_days=1))
    assert [at for at, _ in history] == [T0, T0 + D, T0 + 2 * D, T0 + 3 * D]
    assert history[-1][1].status == "inactive"


def test_window_end_is_exclusive() -> None:
    """At exactly first failure + grace_days the window is over."""
    policy = GracePolicy(attempts=2, interval_hours=48, grace_days=2)
    history = _fail_all(policy)
    assert history[-1] == (T0 + 2 * D, history[-1][1])
    assert history[-1][1].status == "inactive"
    assert len(history) == 2


@pytest.mark.parametrize("grace_days", [None, 0])
def test_hard_decline_without_grace_is_inactive_at_once(grace_days: int | None) -> None:
    decision = on_renewal_failed(T0, GracePolicy(attempts=4, grace_days=grace_days), hard=True)
    assert decision.status == "inactive"
    assert decision.events == (PAYMENT_FAILED, INACTIVE)


def test_hard_decline_with_grace_waits_for_the_window_end() -> None:
    decision = on_renewal_failed(T0, GracePolicy(attempts=4, grace_days=5), hard=True)
    assert decision.status == "active"
    assert decision.next_attempt_at is None
    assert decision.wake_at == T0 + 5 * D


def test_hard_decline_on_a_retry_stops_the_remaining_retries() -> None:
    started = on_renewal_failed(T0, GracePolicy(attempts=4), hard=False)
    assert started.episode is not None
    decision = on_retry_failed(started.episode, T0 + D, hard=True)
    assert decision.status == "inactive"


def test_hard_decline_is_just_a_decline_when_the_policy_says_so() -> None:
    policy = GracePolicy(attempts=3, stop_on_hard_decline=False)
    decision = on_renewal_failed(T0, policy, hard=True)
    assert decision.status == "active"
    assert decision.next_attempt_at == T0 + 24 * H


def test_success_inside_an_episode_recovers() -> None:
    decision = on_success(on_renewal_failed(T0, GracePolicy(attempts=3), hard=False).episode)
    assert decision == Decision(status="active", renewal_status="current", episode=None, events=(RECOVERED,))


def test_success_outside_an_episode_emits_nothing() -> None:
    assert on_success(None) == Decision(status="active", renewal_status="current", episode=None)


def test_new_card_retries_at_once_while_attempts_remain() -> None:
    started = on_renewal_failed(T0, GracePolicy(attempts=3), hard=False)
    assert started.episode is not None
    decision = on_new_default_card(started.episode, T0 + 2 * H)
    assert decision.status == "active"
    assert decision.next_attempt_at == T0 + 2 * H  # replaces the retry scheduled for T0 + 24 h
    assert decision.episode is not None
    assert decision.episode.attempts_made == 1  # the retry itself will count when it is made


def test_new_card_retries_inside_the_window_after_attempts_ran_out() -> None:
    history = _fail_all(GracePolicy(attempts=2, grace_days=7))
    exhausted = history[1][1].episode
    assert exhausted is not None
    decision = on_new_default_card(exhausted, T0 + 3 * D)
    assert decision.next_attempt_at == T0 + 3 * D
    # That retry failing leaves it in grace until the window ends (it counted as attempt 3).
    assert decision.episode is not None
    failed = on_retry_failed(decision.episode, T0 + 3 * D, hard=False)
    assert failed.status == "active"
    assert failed.next_attempt_at is None
    assert failed.wake_at == T0 + 7 * D
    assert failed.episode is not None
    assert failed.episode.attempts_made == 3


def test_new_card_after_a_hard_decline_resumes_retries_when_attempts_remain() -> None:
    """The hard decline was about the old card; a soft decline on the new one retries as usual."""
    started = on_renewal_failed(T0, GracePolicy(attempts=4, grace_days=5), hard=True)
    assert started.episode is not None
    retry = on_new_default_card(started.episode, T0 + 6 * H)
    assert retry.episode is not None
    failed = on_retry_failed(retry.episode, T0 + 6 * H, hard=False)
    assert failed.next_attempt_at == T0 + 30 * H


def test_new_card_when_nothing_is_left_is_inactive() -> None:
    """A worker that has not yet processed the deadline must not let a card revive the episode."""
    history = _fail_all(GracePolicy(attempts=2, grace_days=3))
    exhausted = history[1][1].episode
    assert exhausted is not None
    decision = on_new_default_card(exhausted, T0 + 3 * D)
    assert decision.status == "inactive"
    assert decision.events == (INACTIVE,)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 3, 1, 6, 0)
    policy = GracePolicy(attempts=2)
    with pytest.raises(ValueError, match="aware"):
        on_renewal_failed(naive, policy, hard=False)
    with pytest.raises(ValueError, match="aware"):
        timeline(policy, naive)


# --- the printed timeline -------------------------------------------------------------


def test_timeline_without_grace_days() -> None:
    steps = timeline(GracePolicy(attempts=3, interval_hours=24), T0)
    assert [(at, label.split(":")[0]) for at, label in steps] == [
        (T0, "attempt 1 of 3"),
        (T0 + D, "attempt 2 of 3"),
        (T0 + 2 * D, "attempt 3 of 3"),
        (T0 + 2 * D, "inactive (subscription.inactive)"),
    ]


def test_timeline_with_a_window_longer_than_the_attempts() -> None:
    steps = timeline(GracePolicy(attempts=2, interval_hours=12, grace_days=3), T0)
    assert [at for at, _ in steps] == [T0, T0 + 12 * H, T0 + 12 * H, T0 + 3 * D]
    assert steps[2].label.startswith("attempts exhausted")
    assert steps[-1].label.startswith("inactive")


@given(
    attempts=st.integers(1, 12),
    interval_hours=st.sampled_from([0.5, 1, 6, 12, 24, 36, 48, 72]),
    grace_days=st.none() | st.integers(0, 30),
    start_minutes=st.integers(0, 60 * 24 * 365),
)
def test_timeline_is_what_a_punctual_worker_does(
    attempts: int, interval_hours: float, grace_days: int | None, start_minutes: int
) -> None:
    """`billing policy show` must print what the state machine will really do."""
    policy = GracePolicy(attempts=attempts, interval_hours=interval_hours, grace_days=grace_days)
    start = T0 + timedelta(minutes=start_minutes)
    history = _fail_all_steps(policy, start)
    steps = timeline(policy, start)
    printed_attempts = [at for at, label in steps if re.match(r"attempt \d+ of", label)]
    assert printed_attempts == [at for at, kind, _ in history if kind == "attempt"]
    assert steps[-1].at == history[-1][0]
    assert history[-1][2].status == "inactive"
    assert all(d.status == "active" for _, _, d in history[:-1])


def _doc_timeline_lines(policy: GracePolicy, first_failure: datetime) -> list[str]:
    return [f"{at:%Y-%m-%d %H:%M} UTC  {label}" for at, label in timeline(policy, first_failure)]


def test_worked_timeline_in_the_operator_doc_is_true() -> None:
    """docs/grace-policies.md shows a dated episode; it must match what the code does."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- worked-timeline: [^>]*-->\n```text\n(.*?)```", text, re.DOTALL)
    assert block is not None, "the worked timeline block is missing from docs/grace-policies.md"
    policy = GracePolicy(attempts=3, interval_hours=24, grace_days=7)
    first_failure = datetime(2026, 3, 15, 6, 0, tzinfo=UTC)
    assert block.group(1).strip().splitlines() == _doc_timeline_lines(policy, first_failure)
