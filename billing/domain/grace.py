"""Grace periods: the retry policy and the episode state machine, as pure functions.

An *episode* starts when a renewal charge fails and ends when a charge succeeds
(`current` again) or the subscription becomes `inactive`. Each function takes the
episode and the time of the event and returns a `Decision`: the episode to store (or
None), the statuses, and the events to write to the outbox. Nothing here reads a clock
or a database; the renewal service applies decisions.

Rules (SPEC §5, `docs/grace-policies.md`):

- Every charge attempt counts towards `attempts`, the first failed renewal included.
  Attempt n of an episode is charge attempt number n of its period (idempotency keys).
- A failed attempt schedules the next one `interval_hours` later while attempts remain,
  unless it was a hard decline and the policy stops on those. An interval that is a whole
  number of days (24, 48, ...) means the same local time that many local days later in the
  subscription's time zone, so daily retries never fall twice on one local date across a DST
  change (`retry_after`); other intervals are elapsed hours.
- A new default card retries at once while the grace window is open or attempts remain;
  it replaces whatever retry was scheduled.
- The grace window runs from the first failure for `grace_days` x 24 h (none when
  `grace_days` is None). The subscription becomes `inactive` once no retry is scheduled
  and the window is over; if attempts run out first it stays `in_grace` until the
  window ends (`Episode.wake_at` says when to look again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

from billing.domain.calendar import zone
from billing.domain.errors import BillingError

# `ended` once the subscription is terminal (inactive, cancelled, expired): nothing is retried any more.
RenewalStatus = Literal["current", "in_grace", "ended"]
SubscriptionStatus = Literal["active", "inactive"]
GraceEvent = Literal["subscription.payment_failed", "subscription.recovered", "subscription.inactive"]

PAYMENT_FAILED: Final = "subscription.payment_failed"
RECOVERED: Final = "subscription.recovered"
INACTIVE: Final = "subscription.inactive"

_SNAPSHOT_KEYS: Final = frozenset({"attempts", "interval_hours", "grace_days", "stop_on_hard_decline"})


@dataclass(frozen=True, slots=True)
class GracePolicy:
    """How an episode of failed renewals is retried and when it gives up.

    - `attempts`: charge attempts in an episode in all, the failed renewal included (>= 1).
    - `interval_hours`: hours from a failed attempt to the next scheduled one (> 0;
      fractions allowed, e.g. 0.5).
    - `grace_days`: days after the first failure during which the subscription stays
      `in_grace` even when attempts ran out (None: no window; 0 behaves the same).
    - `stop_on_hard_decline`: a hard decline (lost/stolen card, closed account) cancels
      the scheduled retries.

    Bad values raise 7000 CHECK_PARAMETERS with `field` set to the attribute name.
    """

    attempts: int
    interval_hours: float = 24
    grace_days: int | None = None
    stop_on_hard_decline: bool = True

    def __post_init__(self) -> None:
        _require_int("attempts", self.attempts, minimum=1)
        _require_hours("interval_hours", self.interval_hours)
        if self.grace_days is not None:
            _require_int("grace_days", self.grace_days, minimum=0)
        if not isinstance(self.stop_on_hard_decline, bool):
            raise BillingError(
                "CHECK_PARAMETERS",
                message="stop_on_hard_decline must be true or false.",
                field="stop_on_hard_decline",
            )

    @property
    def interval(self) -> timedelta:
        """Time from a failed attempt to the next scheduled one."""
        return timedelta(hours=self.interval_hours)

    def to_snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict, stored with the episode so config edits never change it."""
        return {
            "attempts": self.attempts,
            "interval_hours": self.interval_hours,
            "grace_days": self.grace_days,
            "stop_on_hard_decline": self.stop_on_hard_decline,
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> GracePolicy:
        """Rebuild a policy from `to_snapshot()` output.

        A dict with missing or extra keys was not written by `to_snapshot` and raises
        `ValueError`; bad values raise as the constructor does.
        """
        keys = set(snapshot)
        if keys != _SNAPSHOT_KEYS:
            raise ValueError(
                "not a grace policy snapshot: "
                f"missing {sorted(_SNAPSHOT_KEYS - keys)}, unexpected {sorted(keys - _SNAPSHOT_KEYS)}"
            )
        return cls(**snapshot)


@dataclass(frozen=True, slots=True)
class PlanGraceFields:
    """A plan's own retry fields (Migo names in comments); None means "not set on the plan"."""

    daily_attempts: int | None = None  # dailyAttempts
    interval_attempt: float | None = None  # intervalAttempt, in hours
    grace_days: int | None = None  # graceDays


def resolve_policy(
    plan_fields: PlanGraceFields, named_policy: GracePolicy | None, default: GracePolicy
) -> GracePolicy:
    """The policy in force for a plan: its own fields, then its named policy, then the default.

    A named policy is complete, so it replaces the default as a whole; each plan field that
    is set then overrides one attribute. `stop_on_hard_decline` has no plan field. A bad plan
    field raises 7000 naming the plan field (`dailyAttempts`, `intervalAttempt`, `graceDays`).
    """
    base = named_policy if named_policy is not None else default
    attempts = base.attempts
    if plan_fields.daily_attempts is not None:
        # Validated here so the error names the plan field the merchant sent.
        _require_int("dailyAttempts", plan_fields.daily_attempts, minimum=1)
        attempts = plan_fields.daily_attempts
    interval_hours = base.interval_hours
    if plan_fields.interval_attempt is not None:
        _require_hours("intervalAttempt", plan_fields.interval_attempt)
        interval_hours = plan_fields.interval_attempt
    grace_days = base.grace_days
    if plan_fields.grace_days is not None:
        _require_int("graceDays", plan_fields.grace_days, minimum=0)
        grace_days = plan_fields.grace_days
    return replace(base, attempts=attempts, interval_hours=interval_hours, grace_days=grace_days)


@dataclass(frozen=True, slots=True)
class Episode:
    """One run of failed renewals of one period (stored on the subscription row).

    `next_attempt_at` is when the next retry is due, or None when none is scheduled
    (attempts exhausted or stopped by a hard decline).
    """

    started_at: datetime
    attempts_made: int
    policy: GracePolicy
    next_attempt_at: datetime | None

    @property
    def window_ends_at(self) -> datetime | None:
        """End of the grace window (first failure + grace_days), or None without one."""
        if self.policy.grace_days is None:
            return None
        return self.started_at + timedelta(days=self.policy.grace_days)

    @property
    def attempts_left(self) -> int:
        """Attempts the policy still allows (card-triggered retries may push this to 0)."""
        return max(0, self.policy.attempts - self.attempts_made)

    @property
    def wake_at(self) -> datetime | None:
        """When the renewal worker must look at this episode again: the next retry or, with
        none scheduled, the end of the grace window (when it turns inactive)."""
        return self.next_attempt_at if self.next_attempt_at is not None else self.window_ends_at

    def window_open(self, now: datetime) -> bool:
        """True while `now` is inside the grace window (the end itself is outside)."""
        ends = self.window_ends_at
        return ends is not None and now < ends


@dataclass(frozen=True, slots=True)
class Decision:
    """What to store and emit after an event of the grace state machine.

    `episode` is the episode to store (None once it is over: recovered or inactive).
    `status` is the subscription's `status`; `inactive` is terminal.
    """

    status: SubscriptionStatus
    renewal_status: RenewalStatus
    episode: Episode | None
    events: tuple[GraceEvent, ...] = ()

    @property
    def next_attempt_at(self) -> datetime | None:
        """When to charge again, or None."""
        return None if self.episode is None else self.episode.next_attempt_at

    @property
    def wake_at(self) -> datetime | None:
        """When the worker must call back (a retry or the grace deadline), or None."""
        return None if self.episode is None else self.episode.wake_at


def retry_after(failed_at: datetime, interval: timedelta, tz: str | None) -> datetime:
    """When the retry after an attempt that failed at `failed_at` is due.

    A whole number of days means the same local wall time that many local days later in `tz`
    (a wall time that a DST gap skips becomes the instant just after the gap; one that happens
    twice, the first); anything else, or no `tz`, is elapsed time.
    """
    _require_aware(failed_at)
    day = timedelta(days=1)
    if tz is None or interval % day:
        return failed_at + interval
    local_zone = zone(tz)
    wall = failed_at.astimezone(local_zone).replace(tzinfo=None) + interval
    return wall.replace(tzinfo=local_zone, fold=0).astimezone(UTC)


def on_renewal_failed(now: datetime, policy: GracePolicy, hard: bool, tz: str | None = None) -> Decision:
    """The renewal charge of a period failed: start an episode (`subscription.payment_failed`).

    `policy` is the one in force now (`resolve_policy`); it is snapshotted in the episode.
    `tz` is the subscription's time zone (whole-day retry intervals follow its local days).
    """
    _require_aware(now)
    episode = Episode(started_at=now, attempts_made=0, policy=policy, next_attempt_at=None)
    return _after_failure(episode, now, hard, events=(PAYMENT_FAILED,), tz=tz)


def on_retry_failed(episode: Episode, now: datetime, hard: bool, tz: str | None = None) -> Decision:
    """A retry inside `episode` failed at `now` (scheduled or card-triggered alike)."""
    _require_aware(now)
    return _after_failure(episode, now, hard, events=(), tz=tz)


def on_success(episode: Episode | None) -> Decision:
    """A charge for the due period succeeded: back to `current`.

    Inside an episode this emits `subscription.recovered`; the renewal and charge events
    are the renewal service's to write in either case.
    """
    events: tuple[GraceEvent, ...] = () if episode is None else (RECOVERED,)
    return Decision(status="active", renewal_status="current", episode=None, events=events)


def on_new_default_card(episode: Episode, now: datetime) -> Decision:
    """A new default payment method was set during `episode`: retry at once if allowed.

    Allowed while the grace window is open or attempts remain. The retry replaces any
    scheduled one; if it fails, `on_retry_failed` schedules as usual (the new card is not
    the one that was hard-declined). When neither holds the episode is already over and
    the decision is `inactive`, as `on_deadline` would have said.
    """
    _require_aware(now)
    if episode.window_open(now) or episode.attempts_left > 0:
        return _in_grace(replace(episode, next_attempt_at=now))
    return on_deadline(episode, now)


def on_deadline(episode: Episode, now: datetime) -> Decision:
    """The worker woke for `episode` with no retry due: inactive if nothing is left to try.

    Inactive when no retry is scheduled and the grace window is over; otherwise the
    episode goes on unchanged.
    """
    _require_aware(now)
    if episode.next_attempt_at is None and not episode.window_open(now):
        return _inactive(episode)
    return _in_grace(episode)


class TimelineStep(NamedTuple):
    """One dated line of an episode's plan."""

    at: datetime
    label: str


def timeline(policy: GracePolicy, first_failure: datetime, tz: str | None = None) -> list[TimelineStep]:
    """The plan an episode starting at `first_failure` follows if every attempt fails softly.

    One step per attempt, an optional step for the end of the grace window while attempts
    are already exhausted, and the moment the subscription becomes inactive. `tz` is the
    subscription's time zone (see `retry_after`).
    """
    _require_aware(first_failure)
    steps = [TimelineStep(first_failure, f"attempt 1 of {policy.attempts}: renewal charge fails")]
    last = first_failure
    for n in range(2, policy.attempts + 1):
        last = retry_after(last, policy.interval, tz)
        steps.append(TimelineStep(last, f"attempt {n} of {policy.attempts}: retry"))
    inactive_at = last
    if policy.grace_days is not None:
        window_end = first_failure + timedelta(days=policy.grace_days)
        if window_end > last:
            steps.append(
                TimelineStep(
                    last, "attempts exhausted: in grace until the window ends (a new default card retries)"
                )
            )
            inactive_at = window_end
    steps.append(TimelineStep(inactive_at, "inactive (subscription.inactive)"))
    return steps


def _after_failure(
    episode: Episode, now: datetime, hard: bool, events: tuple[GraceEvent, ...], tz: str | None
) -> Decision:
    made = episode.attempts_made + 1
    stop = hard and episode.policy.stop_on_hard_decline
    retry = made < episode.policy.attempts and not stop
    next_at = retry_after(now, episode.policy.interval, tz) if retry else None
    updated = replace(episode, attempts_made=made, next_attempt_at=next_at)
    if next_at is None and not updated.window_open(now):
        return _inactive(updated, events)
    return _in_grace(updated, events)


def _in_grace(episode: Episode, events: tuple[GraceEvent, ...] = ()) -> Decision:
    return Decision(status="active", renewal_status="in_grace", episode=episode, events=events)


def _inactive(episode: Episode, events: tuple[GraceEvent, ...] = ()) -> Decision:
    # The period was never paid and nothing will be retried: the status says why it ended.
    return Decision(status="inactive", renewal_status="ended", episode=None, events=(*events, INACTIVE))


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BillingError("CHECK_PARAMETERS", message=f"{name} must be an integer >= {minimum}.", field=name)


def _require_hours(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise BillingError("CHECK_PARAMETERS", message=f"{name} must be a number of hours > 0.", field=name)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("expected an aware datetime (all instants are aware UTC)")
