"""The first period: no renewal minutes after the enrolment charge, and trials never shorter than promised."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from billing.domain.calendar import (
    Schedule,
    default_minimum_first_period,
    due_at,
    enrolment_anchor,
    local_date,
    period_start,
)
from tests.domain.test_calendar import DST_ZONES, MIDNIGHT_DST_ZONES

ZONES = DST_ZONES + MIDNIGHT_DST_ZONES
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@st.composite
def plans(draw: st.DrawFn) -> tuple[str, int, int | None]:
    kind = draw(st.sampled_from(["interval", "fixedDay", "anniversary"]))
    if kind == "interval":
        return kind, draw(st.sampled_from([1, 1, 2, 7, 14, 30])), None
    if kind == "anniversary":
        return kind, draw(st.sampled_from([1, 3, 12])), None
    return kind, 1, draw(st.integers(1, 31))


def _on(kind: str, every: int, day: int | None, tz: str, anchor: date) -> Schedule:
    return Schedule(kind, every, anchor, tz, day=day)  # type: ignore[arg-type]


@given(plan=plans(), tz=st.sampled_from(ZONES), enrolled_at=instants, data=st.data())
def test_the_first_renewal_is_never_closer_than_the_minimum(
    plan: tuple[str, int, int | None], tz: str, enrolled_at: datetime, data: st.DataObject
) -> None:
    kind, every, day = plan
    longest = default_minimum_first_period(kind, every)  # type: ignore[arg-type]
    hours = data.draw(st.integers(0, int(longest / timedelta(hours=1))))
    minimum = timedelta(hours=hours)
    schedule_on = partial(_on, kind, every, day, tz)
    anchor = enrolment_anchor(schedule_on, tz=tz, enrolled_at=enrolled_at, minimum_first_period=minimum)
    schedule = schedule_on(anchor)
    first_renewal = due_at(schedule, 1)
    assert first_renewal - enrolled_at >= minimum
    # Stretched only when needed: anchored on the enrolment day, or on that day's boundary 1.
    plain = schedule_on(local_date(enrolled_at, tz))
    if due_at(plain, 1) - enrolled_at >= minimum:
        assert anchor == plain.anchor
    else:
        assert anchor == period_start(plain, 1)
        # The stretched period stays shorter than two of the plan's periods.
        assert first_renewal == due_at(plain, 2)


@given(plan=plans(), tz=st.sampled_from(ZONES), enrolled_at=instants, trial_days=st.integers(1, 90))
def test_a_trial_lasts_at_least_its_days_and_ends_at_a_local_midnight(
    plan: tuple[str, int, int | None], tz: str, enrolled_at: datetime, trial_days: int
) -> None:
    kind, every, day = plan
    schedule_on = partial(_on, kind, every, day, tz)
    anchor = enrolment_anchor(schedule_on, tz=tz, enrolled_at=enrolled_at, trial_days=trial_days)
    trial_end = due_at(schedule_on(anchor), 0)
    assert trial_end - enrolled_at >= timedelta(days=trial_days)
    # ... and by less than a day more: the first midnight that keeps the promise.
    assert trial_end - enrolled_at < timedelta(days=trial_days + 1, hours=1)
    assert local_date(trial_end, tz) == anchor


def test_enrolled_at_23_58_on_a_daily_plan_is_charged_again_the_midnight_after_next() -> None:
    tz = "America/Guatemala"
    enrolled_at = datetime(2026, 1, 16, 5, 58, tzinfo=UTC)  # 23:58 on Jan 15 in Guatemala
    schedule_on = partial(_on, "interval", 1, None, tz)
    anchor = enrolment_anchor(
        schedule_on, tz=tz, enrolled_at=enrolled_at, minimum_first_period=timedelta(hours=12)
    )
    assert anchor == date(2026, 1, 16)
    assert due_at(schedule_on(anchor), 1) == datetime(2026, 1, 17, 6, 0, tzinfo=UTC)
    # With no minimum, the old rule: charged again two minutes later.
    plain = enrolment_anchor(schedule_on, tz=tz, enrolled_at=enrolled_at)
    assert due_at(schedule_on(plain), 1) - enrolled_at == timedelta(minutes=2)


def test_fixed_day_1_enrolled_on_the_last_evening_of_the_month_renews_the_month_after() -> None:
    tz = "America/New_York"
    enrolled_at = datetime(2026, 2, 1, 4, 58, tzinfo=UTC)  # 23:58 on Jan 31 in New York
    schedule_on = partial(_on, "fixedDay", 1, 1, tz)
    anchor = enrolment_anchor(
        schedule_on, tz=tz, enrolled_at=enrolled_at, minimum_first_period=timedelta(days=14)
    )
    assert due_at(schedule_on(anchor), 1) == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
