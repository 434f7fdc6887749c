"""The settlement-date rule (SPEC §7): before 23:30 UTC -> next business day, else the one after;
business days skip weekends and the country's public holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.settlement import (
    expected_settlement_date,
    is_business_day,
    known_country,
    next_business_day,
)

GT_2026 = holidays.country_holidays("GT", years=2026)


@pytest.mark.parametrize(
    ("captured", "settles"),
    [
        (datetime(2026, 1, 15, 23, 29, 59, tzinfo=UTC), date(2026, 1, 16)),  # Thursday, last second before
        (datetime(2026, 1, 15, 23, 30, 0, tzinfo=UTC), date(2026, 1, 19)),  # at the cut-off: Fri is day one
        (datetime(2026, 1, 16, 10, 0, tzinfo=UTC), date(2026, 1, 19)),  # Friday -> Monday
        (datetime(2026, 1, 17, 10, 0, tzinfo=UTC), date(2026, 1, 19)),  # Saturday -> Monday
        (datetime(2026, 1, 16, 23, 45, tzinfo=UTC), date(2026, 1, 20)),  # Friday late -> Tuesday
        # Holy week in Guatemala: Thu 2 and Fri 3 April 2026 are holidays.
        (datetime(2026, 4, 1, 12, 0, tzinfo=UTC), date(2026, 4, 6)),  # holiday eve -> Monday
        (datetime(2026, 4, 1, 23, 30, tzinfo=UTC), date(2026, 4, 7)),  # holiday eve, late -> Tuesday
        (datetime(2026, 12, 24, 23, 29, 59, tzinfo=UTC), date(2026, 12, 28)),  # Christmas Eve (Thu)
        (datetime(2026, 12, 31, 12, 0, tzinfo=UTC), date(2027, 1, 4)),  # New Year's Eve (Thu)
    ],
)
def test_examples(captured: datetime, settles: date) -> None:
    assert expected_settlement_date(captured, "GT") == settles


def test_the_country_calendar_decides_holidays() -> None:
    good_friday_eve = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)  # a holiday in GT, not in the US
    assert expected_settlement_date(good_friday_eve, "GT") == date(2026, 4, 6)
    assert expected_settlement_date(good_friday_eve, "US") == date(2026, 4, 3)
    assert known_country("GT")
    assert not known_country("XX")


def test_an_offset_instant_is_read_in_utc() -> None:
    # 17:45 in Guatemala (UTC-6) is 23:45 UTC: after the cut-off.
    local = datetime(2026, 1, 15, 17, 45, tzinfo=UTC).astimezone(UTC) + timedelta(hours=6)
    assert expected_settlement_date(local, "GT") == date(2026, 1, 19)


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@given(instants)
def test_settles_on_a_business_day_after_the_capture(captured: datetime) -> None:
    settles = expected_settlement_date(captured, "GT")
    assert settles > captured.date()
    assert settles.weekday() < 5
    assert settles not in GT_2026 or settles.year != 2026
    assert is_business_day(settles, "GT")


@given(instants)
def test_one_business_day_before_the_cutoff_two_from_it(captured: datetime) -> None:
    day = captured.date()
    before = datetime.combine(day, time(23, 29, 59), UTC)
    at = datetime.combine(day, time(23, 30), UTC)
    first = next_business_day(day, "GT")
    assert expected_settlement_date(before, "GT") == first
    assert expected_settlement_date(at, "GT") == next_business_day(first, "GT")
    # Every business day strictly between the capture and the settlement date is counted.
    between = [day + timedelta(days=n) for n in range(1, (first - day).days)]
    assert not any(is_business_day(d, "GT") for d in between)


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)))
def test_a_friday_capture_never_settles_on_the_weekend(day: date) -> None:
    friday = day + timedelta(days=(4 - day.weekday()) % 7)
    for moment in (time(0, 0), time(23, 29, 59), time(23, 30), time(23, 59, 59)):
        settles = expected_settlement_date(datetime.combine(friday, moment, UTC), "GT")
        assert settles.weekday() < 5
        assert settles >= friday + timedelta(days=3)


@given(st.sampled_from(sorted(GT_2026)))
def test_a_holiday_eve_skips_the_holiday(holiday: date) -> None:
    eve = holiday - timedelta(days=1)
    settles = expected_settlement_date(datetime.combine(eve, time(12, 0), UTC), "GT")
    assert settles != holiday
    assert settles > holiday or settles < holiday  # never the holiday itself
    assert is_business_day(settles, "GT")
