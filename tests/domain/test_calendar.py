"""Renewal dates: anchored, clamped to short months, due at local midnight, DST-proof."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.calendar import (
    Schedule,
    anchor_date,
    due_at,
    is_beyond_term,
    local_date,
    next_renewal_after,
    period_start,
    start_of_local_day,
    term_cycles,
    term_end,
)
from billing.domain.errors import BillingError

# Required by the brief, plus zones whose DST switch happens at midnight (Santiago and
# Havana skip 00:00 in spring; Havana repeats it in autumn), which is where a naive
# "combine(date, 00:00)" goes wrong.
DST_ZONES = [
    "America/Guatemala",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
]
MIDNIGHT_DST_ZONES = ["America/Santiago", "America/Havana", "Africa/Cairo", "Asia/Beirut"]
THREE_YEARS = timedelta(days=3 * 366)

zones = st.sampled_from(DST_ZONES + MIDNIGHT_DST_ZONES)
anchors = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def schedules(draw: st.DrawFn, kinds: tuple[str, ...] = ("interval", "fixedDay", "anniversary")) -> Schedule:
    kind = draw(st.sampled_from(kinds))
    tz = draw(zones)
    anchor = draw(anchors)
    if kind == "interval":
        return Schedule("interval", draw(st.integers(1, 90)), anchor, tz)
    if kind == "anniversary":
        return Schedule("anniversary", draw(st.sampled_from([1, 1, 2, 3, 6, 12])), anchor, tz)
    return Schedule("fixedDay", draw(st.sampled_from([1, 1, 1, 3])), anchor, tz, day=draw(st.integers(1, 31)))


def _boundaries(schedule: Schedule) -> list[int]:
    """Boundary indexes whose dates fall within three years of the anchor."""
    ks = []
    k = 0
    while period_start(schedule, k) <= schedule.anchor + THREE_YEARS:
        ks.append(k)
        k += 1
    return ks


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _days_in_month(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


# --- explicit examples ---------------------------------------------------------------


def test_anniversary_on_the_31st_clamps_and_comes_back() -> None:
    schedule = Schedule("anniversary", 1, date(2027, 1, 31), "America/Guatemala")
    dates = [period_start(schedule, k) for k in range(14)]
    assert dates[:6] == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
        date(2027, 6, 30),
    ]
    assert dates[13] == date(2028, 2, 29)  # leap year


def test_anniversary_on_leap_day_returns_to_the_29th_in_leap_years() -> None:
    schedule = Schedule("anniversary", 12, date(2028, 2, 29), "Europe/London")
    assert [period_start(schedule, k) for k in range(5)] == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]


def test_anniversary_every_three_months() -> None:
    schedule = Schedule("anniversary", 3, date(2026, 11, 30), "America/Guatemala")
    assert [period_start(schedule, k) for k in range(4)] == [
        date(2026, 11, 30),
        date(2027, 2, 28),
        date(2027, 5, 30),
        date(2027, 8, 30),
    ]


def test_fixed_day_31_clamps_to_month_end_and_comes_back() -> None:
    schedule = Schedule("fixedDay", 1, date(2027, 1, 10), "America/Guatemala", day=31)
    assert [period_start(schedule, k) for k in range(6)] == [
        date(2027, 1, 10),  # the enrolment charge
        date(2027, 1, 31),  # first day-31 strictly after enrolment: a short first period
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
    ]


def test_fixed_day_enrolment_on_the_day_itself_pays_until_next_month() -> None:
    schedule = Schedule("fixedDay", 1, date(2027, 1, 15), "America/Guatemala", day=15)
    assert period_start(schedule, 1) == date(2027, 2, 15)


def test_fixed_day_enrolment_after_the_day_renews_next_month() -> None:
    schedule = Schedule("fixedDay", 1, date(2027, 1, 20), "America/Guatemala", day=15)
    assert period_start(schedule, 1) == date(2027, 2, 15)
    assert period_start(schedule, 12) == date(2028, 1, 15)


def test_fixed_day_enrolment_on_a_clamped_month_end_counts_as_the_day() -> None:
    """Feb 28 2027 is February's day 31, so the next one is March 31, not Feb 28 again."""
    schedule = Schedule("fixedDay", 1, date(2027, 2, 28), "America/Guatemala", day=31)
    assert period_start(schedule, 1) == date(2027, 3, 31)


def test_interval_counts_local_days_from_the_anchor() -> None:
    schedule = Schedule("interval", 30, date(2026, 1, 31), "America/Guatemala")
    assert period_start(schedule, 1) == date(2026, 3, 2)
    assert period_start(schedule, 12) == date(2026, 1, 31) + timedelta(days=360)


def test_new_york_renewal_across_march_dst_is_at_local_midnight() -> None:
    """00:00 EST is 05:00 UTC; after the spring change 00:00 EDT is 04:00 UTC."""
    schedule = Schedule("anniversary", 1, date(2026, 2, 15), "America/New_York")
    assert due_at(schedule, 0) == _utc(2026, 2, 15, 5)
    assert due_at(schedule, 1) == _utc(2026, 3, 15, 4)
    # And back in November.
    assert due_at(schedule, 9) == _utc(2026, 11, 15, 5)
    ny = ZoneInfo("America/New_York")
    for k in range(12):
        local = due_at(schedule, k).astimezone(ny)
        assert local.time() == time(0)
        assert local.day == 15


def test_weekly_renewal_on_the_dst_day_itself() -> None:
    """2027-03-14 is the US spring change: that day still starts at 00:00 EST."""
    schedule = Schedule("interval", 7, date(2027, 3, 7), "America/New_York")
    assert [due_at(schedule, k) for k in range(3)] == [
        _utc(2027, 3, 7, 5),
        _utc(2027, 3, 14, 5),
        _utc(2027, 3, 21, 4),
    ]


def test_lord_howe_half_hour_shift() -> None:
    schedule = Schedule("anniversary", 1, date(2026, 3, 10), "Australia/Lord_Howe")
    assert due_at(schedule, 0) == _utc(2026, 3, 9, 13)  # +11:00
    assert due_at(schedule, 1) == _utc(2026, 4, 9, 13, 30)  # +10:30


def test_chatham_dates_stay_put() -> None:
    schedule = Schedule("fixedDay", 1, date(2026, 9, 1), "Pacific/Chatham", day=27)
    assert period_start(schedule, 1) == date(2026, 9, 27)  # the spring-forward day
    assert due_at(schedule, 1) == _utc(2026, 9, 26, 11, 15)  # 00:00 +12:45


def test_midnight_swallowed_by_dst_starts_the_day_at_the_transition() -> None:
    """Santiago jumps from 00:00 to 01:00 on 2026-09-06: the day starts at 01:00 -03."""
    assert start_of_local_day(date(2026, 9, 6), "America/Santiago") == _utc(2026, 9, 6, 4)
    assert start_of_local_day(date(2026, 3, 8), "America/Havana") == _utc(2026, 3, 8, 5)


def test_midnight_that_happens_twice_takes_the_first() -> None:
    """Havana goes from 01:00 back to 00:00 on 2026-11-01: the first midnight is 04:00 UTC."""
    assert start_of_local_day(date(2026, 11, 1), "America/Havana") == _utc(2026, 11, 1, 4)


def test_a_day_that_never_happened_starts_with_the_next_one() -> None:
    """Samoa skipped 2011-12-30; the first instant with a local date on or after it is Dec 31 00:00."""
    start = start_of_local_day(date(2011, 12, 30), "Pacific/Apia")
    assert start == _utc(2011, 12, 30, 10)
    assert start.astimezone(ZoneInfo("Pacific/Apia")).date() == date(2011, 12, 31)


def test_trial_moves_the_anchor_to_trial_end() -> None:
    enrolled = local_date(_utc(2026, 1, 31, 3), "America/Guatemala")  # still Jan 30 locally
    assert enrolled == date(2026, 1, 30)
    anchor = anchor_date(enrolled, trial_days=14)
    assert anchor == date(2026, 2, 13)
    schedule = Schedule("anniversary", 1, anchor, "America/Guatemala")
    assert due_at(schedule, 0) == _utc(2026, 2, 13, 6)
    assert period_start(schedule, 1) == date(2026, 3, 13)
    assert anchor_date(enrolled) == enrolled


def test_next_renewal_after_examples() -> None:
    schedule = Schedule("interval", 30, date(2026, 1, 1), "America/Guatemala")
    assert next_renewal_after(schedule, _utc(2025, 12, 1)) == (0, _utc(2026, 1, 1, 6))
    # Exactly at a due instant: that boundary is not "after", the next one is.
    assert next_renewal_after(schedule, _utc(2026, 1, 1, 6)) == (1, _utc(2026, 1, 31, 6))
    assert next_renewal_after(schedule, _utc(2026, 1, 31, 5, 59)) == (1, _utc(2026, 1, 31, 6))


def test_fixed_terms() -> None:
    assert term_cycles(None, auto_renewal=True) is None
    assert term_cycles(12, auto_renewal=True) == 12
    assert term_cycles(None, auto_renewal=False) == 1
    assert term_cycles(1, auto_renewal=False) == 1
    with pytest.raises(BillingError) as excinfo:
        term_cycles(3, auto_renewal=False)
    assert excinfo.value.field == "cycles"
    with pytest.raises(BillingError):
        term_cycles(0, auto_renewal=True)
    assert not is_beyond_term(2, 3)
    assert is_beyond_term(3, 3)
    assert not is_beyond_term(10_000, None)
    schedule = Schedule("anniversary", 1, date(2026, 1, 31), "America/Guatemala")
    assert term_end(schedule, 3) == due_at(schedule, 3) == _utc(2026, 4, 30, 6)
    assert term_end(schedule, None) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "automatic", "every": 1}, "type"),
        ({"kind": "interval", "every": 0}, "frequency.frequency"),
        ({"kind": "interval", "every": True}, "frequency.frequency"),
        ({"kind": "interval", "every": 30, "day": 1}, "frequency.day"),
        ({"kind": "fixedDay", "every": 1}, "frequency.day"),
        ({"kind": "fixedDay", "every": 1, "day": 0}, "frequency.day"),
        ({"kind": "fixedDay", "every": 1, "day": 32}, "frequency.day"),
        ({"kind": "anniversary", "every": 1, "tz": "Mars/Olympus_Mons"}, "timezone"),
        ({"kind": "anniversary", "every": 1, "tz": "../../etc/passwd"}, "timezone"),
        ({"kind": "anniversary", "every": 1, "tz": ""}, "timezone"),
    ],
)
def test_bad_schedules_name_the_plan_field(kwargs: dict[str, object], field: str) -> None:
    params: dict[str, object] = {"anchor": date(2026, 1, 1), "tz": "America/Guatemala", **kwargs}
    with pytest.raises(BillingError) as excinfo:
        Schedule(**params)  # type: ignore[arg-type]
    assert excinfo.value.code == "7000"
    assert excinfo.value.field == field


def test_misuse_is_loud() -> None:
    with pytest.raises(TypeError):
        Schedule("interval", 1, datetime(2026, 1, 1, tzinfo=UTC), "UTC")
    schedule = Schedule("interval", 1, date(2026, 1, 1), "UTC")
    with pytest.raises(ValueError, match="boundary"):
        period_start(schedule, -1)
    with pytest.raises(ValueError, match="aware"):
        next_renewal_after(schedule, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        local_date(datetime(2026, 1, 1), "UTC")
    with pytest.raises(BillingError):
        anchor_date(date(2026, 1, 1), trial_days=-1)


# --- properties over three years of renewals ------------------------------------------


@given(schedule=schedules())
def test_due_instants_strictly_increase_and_fall_on_their_local_date(schedule: Schedule) -> None:
    """One renewal per period: each due instant opens its own local date, in order."""
    tz = ZoneInfo(schedule.tz)
    previous: datetime | None = None
    seen_dates: set[date] = set()
    for k in _boundaries(schedule):
        day = period_start(schedule, k)
        due = due_at(schedule, k)
        assert due.tzinfo is UTC
        assert due.astimezone(tz).date() == day
        # It is the first instant of that day: a second earlier is still the day before.
        assert (due - timedelta(seconds=1)).astimezone(tz).date() < day
        if schedule.tz in DST_ZONES:
            assert due.astimezone(tz).time() == time(0)
        if previous is not None:
            assert due > previous
        assert day not in seen_dates
        seen_dates.add(day)
        previous = due


@given(schedule=schedules(kinds=("interval",)))
def test_interval_periods_are_exactly_n_local_days(schedule: Schedule) -> None:
    tz = ZoneInfo(schedule.tz)
    ks = _boundaries(schedule)
    for k in ks[1:]:
        assert (period_start(schedule, k) - period_start(schedule, k - 1)).days == schedule.every
        if schedule.tz in MIDNIGHT_DST_ZONES:
            continue  # there a day may start at 01:00; the local-date check above covers them
        # In absolute time a period is N x 24 h give or take the DST shift between its ends.
        before, after = due_at(schedule, k - 1), due_at(schedule, k)
        shift = after.astimezone(tz).utcoffset() - before.astimezone(tz).utcoffset()  # type: ignore[operator]
        assert after - before == timedelta(days=schedule.every) - shift


@given(schedule=schedules(kinds=("anniversary",)))
def test_anniversary_keeps_the_anchor_day_whenever_the_month_has_it(schedule: Schedule) -> None:
    anchor = schedule.anchor
    for k in _boundaries(schedule):
        day = period_start(schedule, k)
        months = (day.year - anchor.year) * 12 + day.month - anchor.month
        assert months == k * schedule.every  # never skips or repeats a month
        assert day.day == min(anchor.day, _days_in_month(day.year, day.month))


@given(schedule=schedules(kinds=("fixedDay",)))
def test_fixed_day_lands_on_its_day_whenever_the_month_has_it(schedule: Schedule) -> None:
    assert schedule.day is not None
    ks = _boundaries(schedule)
    assert period_start(schedule, 0) == schedule.anchor
    for k in ks[1:]:
        day = period_start(schedule, k)
        assert day.day == min(schedule.day, _days_in_month(day.year, day.month))
        assert day > schedule.anchor
        if k >= 2:
            prev = period_start(schedule, k - 1)
            assert (day.year - prev.year) * 12 + day.month - prev.month == schedule.every
    # The first renewal is the first day-D after enrolment: no day-D in between is skipped.
    first = period_start(schedule, 1)
    probe = schedule.anchor + timedelta(days=1)
    while probe < first:
        assert probe.day != min(schedule.day, _days_in_month(probe.year, probe.month))
        probe += timedelta(days=1)


@given(schedule=schedules(), offset=st.timedeltas(min_value=-timedelta(days=40), max_value=THREE_YEARS))
def test_next_renewal_after_finds_the_first_later_boundary(schedule: Schedule, offset: timedelta) -> None:
    instant = due_at(schedule, 0) + offset
    k, due = next_renewal_after(schedule, instant)
    assert due == due_at(schedule, k)
    assert due > instant
    assert k == 0 or due_at(schedule, k - 1) <= instant


@given(
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31)),
    tz=st.sampled_from([*DST_ZONES, *MIDNIGHT_DST_ZONES, "Pacific/Apia", "Asia/Tehran", "America/Sao_Paulo"]),
)
def test_start_of_local_day_is_the_first_instant_of_that_date(day: date, tz: str) -> None:
    start = start_of_local_day(day, tz)
    zone = ZoneInfo(tz)
    assert start.astimezone(zone).date() >= day
    assert (start - timedelta(seconds=1)).astimezone(zone).date() < day
    assert local_date(start, tz) >= day
