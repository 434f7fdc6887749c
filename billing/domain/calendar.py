"""Renewal dates: which local date each billing period starts on, and when its charge is due.

A subscription's schedule is anchored: the k-th boundary is computed from the anchor
date and k alone, never from the previous (possibly late) payment, so renewals do not
drift. Dates are the client's local calendar dates; a charge is due at the first instant
of its date in the client's IANA time zone, returned as an aware UTC datetime.

Boundary k = 0 is the first charge: the enrolment date, or the trial-end date when the
plan has a trial (see `anchor_date`). `docs/calendar.md` walks through every rule.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.domain.errors import BillingError

ScheduleKind = Literal["interval", "fixedDay", "anniversary"]
_KINDS: Final = frozenset(get_args(ScheduleKind))


def zone(tz: str) -> ZoneInfo:
    """The `ZoneInfo` for an IANA key, or 7000 CHECK_PARAMETERS naming `timezone`."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise BillingError(
            "CHECK_PARAMETERS", message="timezone must be an IANA time zone name.", field="timezone"
        ) from exc


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscription renews.

    - `kind="interval"`: every `every` days.
    - `kind="anniversary"`: every `every` months on the anchor's day of month, clamped to
      short months and restored in longer ones (Jan 31 -> Feb 28/29 -> Mar 31).
    - `kind="fixedDay"`: on day `day` (1..31, clamped the same way) every `every` months
      (plans use 1). Boundary 0 is the anchor itself; boundary 1 is the first day-`day`
      strictly after the anchor, so the first period may be shorter than a month.

    `anchor` is the local date of boundary 0 and `tz` the client's IANA time zone. `day`
    is required for `fixedDay` and must be None otherwise. Invalid values raise 7000
    CHECK_PARAMETERS naming the plan field (`frequency.frequency`, `frequency.day`, `timezone`).
    """

    kind: ScheduleKind
    every: int
    anchor: date
    tz: str
    day: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise BillingError(
                "CHECK_PARAMETERS", message=f"type must be one of {sorted(_KINDS)}.", field="type"
            )
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise BillingError(
                "CHECK_PARAMETERS",
                message="frequency.frequency must be an integer >= 1.",
                field="frequency.frequency",
            )
        if self.kind == "fixedDay":
            if isinstance(self.day, bool) or not isinstance(self.day, int) or not 1 <= self.day <= 31:
                raise BillingError(
                    "CHECK_PARAMETERS",
                    message="frequency.day must be an integer from 1 to 31 for fixedDay plans.",
                    field="frequency.day",
                )
        elif self.day is not None:
            raise BillingError(
                "CHECK_PARAMETERS",
                message="frequency.day applies to fixedDay plans only.",
                field="frequency.day",
            )
        if isinstance(self.anchor, datetime) or not isinstance(self.anchor, date):
            raise TypeError("Schedule.anchor must be a date (a local calendar date), not a datetime")
        zone(self.tz)


def anchor_date(enrolled_on: date, trial_days: int = 0) -> date:
    """Local date of boundary 0: the enrolment date, pushed back by the trial if any.

    With a trial the first charge is at trial end and the whole schedule (anniversary day,
    interval count) is anchored there.
    """
    if isinstance(trial_days, bool) or not isinstance(trial_days, int) or trial_days < 0:
        raise BillingError(
            "CHECK_PARAMETERS", message="trialDays must be an integer >= 0.", field="trialDays"
        )
    return enrolled_on + timedelta(days=trial_days)


def shortest_period(kind: ScheduleKind, every: int) -> timedelta:
    """The shortest period a schedule can have: `every` days, or `every` months of 28 days."""
    return timedelta(days=every) if kind == "interval" else timedelta(days=28 * every)


def default_minimum_first_period(kind: ScheduleKind, every: int) -> timedelta:
    """Half the shortest period: the least time an enrolment charge pays for by default."""
    return shortest_period(kind, every) / 2


def enrolment_anchor(
    schedule_on: Callable[[date], Schedule],
    *,
    tz: str,
    enrolled_at: datetime,
    trial_days: int = 0,
    minimum_first_period: timedelta = timedelta(0),
) -> date:
    """The local date of boundary 0 for a cardholder enrolled at `enrolled_at` (client zone `tz`).

    `schedule_on(anchor)` is the plan's schedule anchored on a local date.

    - With a trial, boundary 0 (the first charge) is the first local midnight at least
      `trial_days` x 24 h after the enrolment instant: a trial is never shorter than promised,
      whatever the hour the cardholder enrolled.
    - Without one, the enrolment charge pays period 0, from the enrolment day's midnight to
      boundary 1. When boundary 1 is closer to the enrolment instant than `minimum_first_period`
      (enrolled at 23:58 on a daily plan, or the day before a fixedDay plan's day), the first
      paid period runs on to the following boundary instead: the schedule is anchored on
      boundary 1, so the cardholder is not charged twice within minutes.
    """
    _require_aware(enrolled_at)
    enrolled_on = local_date(enrolled_at, tz)
    anchor_date(enrolled_on, trial_days)  # validates trial_days
    if trial_days:
        trial_end = enrolled_at + timedelta(days=trial_days)
        day = local_date(trial_end, tz)
        if start_of_local_day(day, tz) < trial_end:
            day += timedelta(days=1)
        return day
    schedule = schedule_on(enrolled_on)
    if due_at(schedule, 1) - enrolled_at < minimum_first_period:
        return period_start(schedule, 1)
    return enrolled_on


def local_date(instant: datetime, tz: str) -> date:
    """The calendar date `instant` falls on in time zone `tz`."""
    return _require_aware(instant).astimezone(zone(tz)).date()


def start_of_local_day(day: date, tz: str) -> datetime:
    """The first instant (aware UTC) whose local date in `tz` is `day`.

    That is 00:00 local when it exists. When a DST gap swallows midnight the day begins
    at the transition (the first valid instant of the day); when midnight happens twice,
    the first occurrence (fold=0) counts.
    """
    tzinfo = zone(tz)
    wall = datetime.combine(day, time(0))
    first = wall.replace(tzinfo=tzinfo).astimezone(UTC)
    if first.astimezone(tzinfo).replace(tzinfo=None) == wall:
        return first
    # Midnight does not exist. With fold=1 the wall time is read with the offset after
    # the gap, which lands before the transition (still the previous day); with fold=0,
    # with the offset before it, which lands after. The day starts at the transition
    # in between; transitions fall on whole seconds, so bisect on seconds.
    lo = wall.replace(tzinfo=tzinfo, fold=1).astimezone(UTC)
    hi = first
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) // 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(tzinfo).date() >= day:
            hi = mid
        else:
            lo = mid
    return hi


def period_start(schedule: Schedule, k: int) -> date:
    """Local date of boundary `k` (k >= 0): the day the k-th charge is due and period k starts."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"boundary index must be an int >= 0, got {k!r}")
    anchor = schedule.anchor
    if schedule.kind == "interval":
        return anchor + timedelta(days=k * schedule.every)
    if schedule.kind == "anniversary":
        return _month_day(anchor.year, anchor.month + k * schedule.every, anchor.day)
    # fixedDay
    assert schedule.day is not None  # checked by Schedule
    if k == 0:
        return anchor
    first_month = anchor.month
    if _month_day(anchor.year, anchor.month, schedule.day) <= anchor:
        first_month += 1
    return _month_day(anchor.year, first_month + (k - 1) * schedule.every, schedule.day)


def due_at(schedule: Schedule, k: int) -> datetime:
    """When the k-th charge is due: the start of `period_start(schedule, k)` in the client's zone (UTC)."""
    return start_of_local_day(period_start(schedule, k), schedule.tz)


def next_renewal_after(schedule: Schedule, instant: datetime) -> tuple[int, datetime]:
    """The first boundary due strictly after `instant`, as `(k, due_at(schedule, k))`."""
    _require_aware(instant)
    k = _estimate_index(schedule, local_date(instant, schedule.tz))
    # The estimate is within a boundary or two of the answer; walk to it.
    while due_at(schedule, k) <= instant:
        k += 1
    while k > 0 and due_at(schedule, k - 1) > instant:
        k -= 1
    return k, due_at(schedule, k)


def term_cycles(cycles: int | None, auto_renewal: bool) -> int | None:
    """Number of paid cycles in a fixed term, or None for "until cancelled".

    `autoRenewal: false` means a single cycle; combining it with another `cycles` value is
    contradictory and raises 7000 naming `cycles`.
    """
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1):
        raise BillingError("CHECK_PARAMETERS", message="cycles must be an integer >= 1.", field="cycles")
    if not auto_renewal:
        if cycles not in (None, 1):
            raise BillingError(
                "CHECK_PARAMETERS",
                message="cycles must be 1 or null when autoRenewal is false.",
                field="cycles",
            )
        return 1
    return cycles


def is_beyond_term(k: int, cycles: int | None) -> bool:
    """True when boundary `k` must not be charged: the term's `cycles` paid cycles are k = 0..cycles-1."""
    return cycles is not None and k >= cycles


def term_end(schedule: Schedule, cycles: int | None) -> datetime | None:
    """When a fixed-term subscription expires (the end of its last paid period), or None."""
    return None if cycles is None else due_at(schedule, cycles)


def _month_day(year: int, month: int, day: int) -> date:
    """Day `day` of the month `month` (may run past 12) of `year`, clamped to the month's end."""
    extra_years, month_index = divmod(month - 1, 12)
    year += extra_years
    last = _gregorian.monthrange(year, month_index + 1)[1]
    return date(year, month_index + 1, min(day, last))


def _estimate_index(schedule: Schedule, day: date) -> int:
    anchor = schedule.anchor
    if schedule.kind == "interval":
        return max(0, (day - anchor).days // schedule.every)
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    return max(0, months // schedule.every)


def _require_aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("expected an aware datetime (all instants are aware UTC)")
    return instant
